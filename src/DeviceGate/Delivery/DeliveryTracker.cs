using DeviceGate.Events;
using DeviceGate.Storage;

namespace DeviceGate.Delivery;

/// <summary>
/// What lanes report about the messages they carry: written (<c>sent</c>), acked; durable statuses go to the store,
/// ttl-0 ones to the in-memory status book; counted and announced on the event stream.
/// </summary>
internal sealed class DeliveryTracker(IMessageStore store, IStateStore states, StatusBook book, EventHub events, GatewayMetrics metrics, TimeProvider time, ILogger<DeliveryTracker> logger)
    : ILaneReports
{
    public void Sent(string device, DeviceLane.Entry entry, bool final)
    {
        if (entry.Attempts == 1)
        {
            var kind = entry.Message.IsState ? MessageKinds.State : entry.Message.Group is null ? MessageKinds.Targeted : MessageKinds.Group;
            metrics.Delivered(kind, time.GetElapsedTime(entry.AcceptedAt));
            Telemetry.Mark("DeviceGate socket write", entry.Message.Trace, device, entry.Message.Id);
        }
        // Not recorded now means delivered again later: at-least-once holds.
        if (entry.Durable) store.RecordAsync(device, entry.Message.Id, MessageStatus.Sent, final, time.GetUtcNow()).LogFailure(logger);
        else book.Record(entry.Message.Id, MessageStatus.Sent);
    }

    public void Acked(string device, DeviceLane.Entry entry)
    {
        if (entry.Durable) store.RecordAsync(device, entry.Message.Id, MessageStatus.Acked, final: true, time.GetUtcNow()).LogFailure(logger);
        else book.Record(entry.Message.Id, MessageStatus.Acked);
        // The device has seen this desired version: ackedVersion moves (only ever up).
        if (entry.Message.IsState) states.AckStateAsync(device, entry.Message.StateVersion).LogFailure(logger);
        metrics.Acks.Add(1);
        events.Acked(device, entry.Message.Id);
        Telemetry.Mark("DeviceGate ack", entry.Message.Trace, device, entry.Message.Id);
    }

    /// <summary>An ack for a ttl=0 message (not held for its ack): counted and announced once, however often it comes.</summary>
    public void AckedUntracked(string device, string id)
    {
        if (!book.BelongsTo(id, device) || !book.Record(id, MessageStatus.Acked)) return;
        metrics.Acks.Add(1);
        events.Acked(device, id);
    }

    /// <summary>A ttl=0 message another node handed over for a device here: its in-memory status is kept on this node.</summary>
    public void TrackRemote(string device, DeviceMessage message) => book.Add(message.Id, device);
}
