using System.Text.Json.Nodes;
using DeviceGate.Delivery;
using DeviceGate.Protocol;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;

namespace DeviceGate.State;

/// <summary>
/// Desired state as messages to envelope devices: <c>{"type":"state","id","version","desired","delta"}</c>, a durable
/// message of the outbox (latest wins: a newer version supersedes the pending one). A device that connects with
/// <c>ackedVersion &lt; desiredVersion</c> and no such message pending (it expired, was cancelled, or the node died
/// between the state write and the message's) is given a new one.
/// </summary>
internal sealed class StateMessages(IStateStore states, IMessageStore messages, IOptions<GatewayOptions> options, TimeProvider time) : IOwedMessages
{
    private readonly TimeSpan _keep = options.Value.Delivery.MaxTtl;

    /// <summary>The state message for desired version <paramref name="version"/>; kept for DeviceGate:Delivery:MaxTtl.</summary>
    public StoredMessage Build(string device, long version, string desiredJson, JsonObject delta)
    {
        var id = DeviceMessage.NewId();
        var now = time.GetUtcNow();
        var envelope = EnvelopeWriter.State(id, version, desiredJson, StatePatch.ToCompactJson(delta, out _));
        return new StoredMessage(id, device, DeviceId.Server, null, MessageData.Json(envelope), now, now + _keep, StateVersion: version);
    }

    public async Task<StoredMessage?> OwedAsync(string device, IReadOnlyList<StoredMessage> pending)
    {
        var record = await states.GetStateAsync(device).ConfigureAwait(false);
        if (record.AckedVersion >= record.DesiredVersion) return null;
        foreach (var m in pending)
        {
            if (m.StateVersion >= record.DesiredVersion) return null;
        }
        var delta = StatePatch.Delta(JsonNode.Parse(record.Desired)!.AsObject(), JsonNode.Parse(record.Reported)!.AsObject());
        var message = Build(device, record.DesiredVersion, record.Desired, delta);
        var accepted = await messages.AcceptAsync(message, null, int.MaxValue).ConfigureAwait(false);
        return accepted.Outcome == AcceptOutcome.Accepted ? message : null;
    }
}
