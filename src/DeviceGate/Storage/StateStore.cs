namespace DeviceGate.Storage;

/// <summary>The two parts of a device's state document (issue 15).</summary>
public enum StatePart { Desired, Reported }

/// <summary>A device's state as stored: each part as compact JSON text, with its version (0 until first set).</summary>
public sealed record StateRecord(string Desired, string Reported, long DesiredVersion, long ReportedVersion, long AckedVersion, DateTimeOffset? DesiredAt, DateTimeOffset? ReportedAt)
{
    public static readonly StateRecord Empty = new("{}", "{}", 0, 0, 0, null, null);

    public string Part(StatePart part) => part == StatePart.Desired ? Desired : Reported;

    public long Version(StatePart part) => part == StatePart.Desired ? DesiredVersion : ReportedVersion;

    /// <summary>
    /// The rule every store applies inside its atomic step: a stale <paramref name="ifMatch"/> changes nothing, then the
    /// edit decides; a change gives the part its next version. <see cref="StateWriteOutcome.Written"/> carries the
    /// record to write; every other outcome carries this one.
    /// </summary>
    public StateWrite Apply(StatePart part, Func<string, StateEdit> edit, long? ifMatch, DateTimeOffset at)
    {
        if (ifMatch is { } expected && expected != Version(part)) return new StateWrite(StateWriteOutcome.VersionMismatch, this);
        var result = edit(Part(part));
        if (result.Refused) return new StateWrite(StateWriteOutcome.Refused, this);
        if (result.Json is null || result.Json == Part(part)) return new StateWrite(StateWriteOutcome.Unchanged, this);
        var next = part == StatePart.Desired
            ? this with { Desired = result.Json, DesiredVersion = DesiredVersion + 1, DesiredAt = at }
            : this with { Reported = result.Json, ReportedVersion = ReportedVersion + 1, ReportedAt = at };
        return new StateWrite(StateWriteOutcome.Written, next);
    }
}

/// <summary>What an edit of a part says: the new JSON (null: nothing changes), or that it is refused (too large).</summary>
public readonly record struct StateEdit(string? Json, bool Refused = false);

public enum StateWriteOutcome { Written, Unchanged, VersionMismatch, Refused }

public readonly record struct StateWrite(StateWriteOutcome Outcome, StateRecord Record);

/// <summary>
/// Device state documents. Contract: <see cref="UpdateStateAsync"/> is atomic per device: the edit sees the part as it
/// is, and its result is written with the part's version plus one, unless <c>ifMatch</c> names another version
/// (then nothing changes: <see cref="StateWriteOutcome.VersionMismatch"/>) or the edit changes nothing (the version
/// stays). Durable when the task completes; a store that cannot take it throws <see cref="StoreUnavailableException"/>.
/// Forgetting a device (<see cref="IDirectoryStore.ForgetDeviceAsync"/>) removes its state.
/// </summary>
public interface IStateStore
{
    /// <summary>The device's state; <see cref="StateRecord.Empty"/> for a device that has none.</summary>
    Task<StateRecord> GetStateAsync(string device);

    Task<StateWrite> UpdateStateAsync(string device, StatePart part, Func<string, StateEdit> edit, long? ifMatch, DateTimeOffset at);

    /// <summary>The device acked desired version <paramref name="version"/>; the acked version only grows.</summary>
    Task AckStateAsync(string device, long version);
}
