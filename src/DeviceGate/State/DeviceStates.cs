using System.Text.Json.Nodes;
using DeviceGate.Events;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;

namespace DeviceGate.State;

/// <summary>A device's state document as the API shows it: both parts, the delta, versions and when each part changed.</summary>
internal sealed record StateDocument(string Device, JsonObject Desired, JsonObject Reported, JsonObject Delta,
    long DesiredVersion, long ReportedVersion, long AckedVersion, DateTimeOffset? DesiredAt, DateTimeOffset? ReportedAt);

public enum StateChangeOutcome { Changed, Unchanged, VersionMismatch, TooLarge }

/// <summary>
/// Device state (desired and reported): reads, merge patches and replacements through the state store (atomic
/// versions, If-Match), each change announced as a <c>state</c> event. Delivery of desired state to devices builds
/// on this (issue 15, next).
/// </summary>
internal sealed class DeviceStates(IStateStore store, EventHub events, IOptions<GatewayOptions> options, TimeProvider time)
{
    private readonly int _maxBytes = options.Value.State.MaxBytes;

    public async Task<StateDocument> GetAsync(string device) => Document(device, await store.GetStateAsync(device).ConfigureAwait(false));

    /// <summary>Applies <paramref name="patch"/> (RFC 7396), or with <paramref name="replace"/> puts it in the part's place.</summary>
    public async Task<(StateChangeOutcome Outcome, StateDocument Document)> ChangeAsync(string device, StatePart part, JsonObject patch, bool replace, long? ifMatch)
    {
        var write = await store.UpdateStateAsync(device, part, current =>
        {
            var next = replace ? (JsonObject)patch.DeepClone() : StatePatch.Apply(JsonNode.Parse(current)!.AsObject(), patch);
            var json = StatePatch.ToCompactJson(next, out var bytes);
            return bytes > _maxBytes ? new StateEdit(null, Refused: true) : new StateEdit(json);
        }, ifMatch, time.GetUtcNow()).ConfigureAwait(false);
        var outcome = write.Outcome switch
        {
            StateWriteOutcome.Written => StateChangeOutcome.Changed,
            StateWriteOutcome.VersionMismatch => StateChangeOutcome.VersionMismatch,
            StateWriteOutcome.Refused => StateChangeOutcome.TooLarge,
            _ => StateChangeOutcome.Unchanged,
        };
        if (outcome == StateChangeOutcome.Changed)
        {
            events.StateChanged(device, part == StatePart.Desired ? "desired" : "reported", write.Record.Version(part), patch.ToJsonString());
        }
        return (outcome, Document(device, write.Record));
    }

    private static StateDocument Document(string device, StateRecord r)
    {
        var desired = JsonNode.Parse(r.Desired)!.AsObject();
        var reported = JsonNode.Parse(r.Reported)!.AsObject();
        return new StateDocument(device, desired, reported, StatePatch.Delta(desired, reported), r.DesiredVersion, r.ReportedVersion, r.AckedVersion, r.DesiredAt, r.ReportedAt);
    }
}

internal static class StateRegistration
{
    public static IServiceCollection AddDeviceState(this IServiceCollection services) => services.AddSingleton<DeviceStates>();
}
