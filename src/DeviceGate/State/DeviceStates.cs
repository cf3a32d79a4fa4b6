using System.Text.Json.Nodes;
using DeviceGate.Delivery;
using DeviceGate.Events;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;

namespace DeviceGate.State;

/// <summary>A device's state document as the API shows it: both parts, the delta, versions and when each part changed.</summary>
internal sealed record StateDocument(string Device, JsonObject Desired, JsonObject Reported, JsonObject Delta,
    long DesiredVersion, long ReportedVersion, long AckedVersion, DateTimeOffset? DesiredAt, DateTimeOffset? ReportedAt);

public enum StateChangeOutcome { Changed, Unchanged, VersionMismatch, TooLarge }

/// <summary>What a change came to; <see cref="MessageId"/> names the state message a desired change made (null otherwise).</summary>
internal readonly record struct StateChange(StateChangeOutcome Outcome, StateDocument Document, string? MessageId = null);

/// <summary>
/// Device state (desired and reported): reads, merge patches and replacements through the state store (atomic
/// versions, If-Match), each change announced as a <c>state</c> event; a desired change becomes a state message to
/// the device through the outbox (<see cref="StateMessages"/>).
/// </summary>
internal sealed class DeviceStates(IStateStore store, StateMessages messages, Outbox outbox, EventHub events, IOptions<GatewayOptions> options, TimeProvider time,
    ILogger<DeviceStates> logger)
{
    private readonly int _maxBytes = options.Value.State.MaxBytes;

    public async Task<StateDocument> GetAsync(string device) => Document(device, await store.GetStateAsync(device).ConfigureAwait(false));

    /// <summary>Applies <paramref name="patch"/> (RFC 7396), or with <paramref name="replace"/> puts it in the part's place.</summary>
    public async Task<StateChange> ChangeAsync(string device, StatePart part, JsonObject patch, bool replace, long? ifMatch)
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
        var document = Document(device, write.Record);
        if (outcome != StateChangeOutcome.Changed) return new StateChange(outcome, document);
        events.StateChanged(device, part == StatePart.Desired ? "desired" : "reported", write.Record.Version(part), patch.ToJsonString());
        if (part != StatePart.Desired) return new StateChange(outcome, document);
        var message = messages.Build(device, document.DesiredVersion, write.Record.Desired, document.Delta);
        try
        {
            return new StateChange(outcome, document, await outbox.AcceptStateAsync(message).ConfigureAwait(false) ? message.Id : null);
        }
        catch (StoreUnavailableException e)
        {
            // The state itself is durable: the device is given it when it next connects (StateMessages.OwedAsync).
            Log.StoreWriteFailed(logger, e.InnerException?.Message ?? e.Message);
            return new StateChange(outcome, document);
        }
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
    public static IServiceCollection AddDeviceState(this IServiceCollection services)
    {
        services.AddSingleton<StateMessages>();
        services.AddSingleton<IOwedMessages>(sp => sp.GetRequiredService<StateMessages>());
        return services.AddSingleton<DeviceStates>();
    }
}
