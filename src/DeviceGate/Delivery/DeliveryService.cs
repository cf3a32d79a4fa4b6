using DeviceGate.Connections;
using DeviceGate.Events;
using DeviceGate.Hosting;
using DeviceGate.Routing;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;

namespace DeviceGate.Delivery;

public enum SendOutcome { Sent, Queued, Duplicate, NotConnected, OutboxFull, Unavailable }

/// <summary>What a send came to: the message id and the status to report.</summary>
public readonly record struct SendResult(SendOutcome Outcome, string Id, string Status);

/// <summary>
/// Accepts targeted and group messages: durable ones (ttl &gt; 0) are in the store before this returns, then
/// handed to the device's lane if it is connected; non-durable ones go to a connected device's lane or nowhere.
/// Also records what lanes report (sent, acked) and answers status look-ups.
/// </summary>
internal sealed class DeliveryService(
    IMessageStore store,
    ConnectionRegistry registry,
    DeviceDirectory directory,
    GroupRegistry groups,
    StatusBook book,
    EventHub events,
    GatewayMetrics metrics,
    IOptions<GatewayOptions> options,
    TimeProvider time,
    ILogger<DeliveryService> logger)
{
    private readonly DeliveryOptions _o = options.Value.Delivery;

    public DeviceLane CreateLane(DeviceConnection connection) =>
        new(connection, this, _o.MaxInFlight, options.Value.Limits.SendQueueMessages, _o.AckTimeout, time);

    public Task<IReadOnlyList<StoredMessage>> LoadPendingAsync(string device) => store.LoadPendingAsync(device, time.GetUtcNow());

    /// <summary>Sends to one device. With a ttl the message is durable (written before this completes).</summary>
    public async Task<SendResult> SendAsync(string device, MessageData data, string from, string? group, TimeSpan ttl, string? idempotencyKey)
    {
        if (ttl <= TimeSpan.Zero) return SendNow(device, new DeviceMessage(DeviceMessage.NewId(), from, group, data), idempotencyKey);

        var now = time.GetUtcNow();
        var stored = new StoredMessage(DeviceMessage.NewId(), device, from, group, data, now, now + ttl);
        AcceptResult accepted;
        try
        {
            accepted = await store.AcceptAsync(stored, idempotencyKey, _o.MaxQueuedPerDevice).ConfigureAwait(false);
        }
        catch (StoreUnavailableException e)
        {
            Log.StoreWriteFailed(logger, e.InnerException?.Message ?? e.Message);
            return new SendResult(SendOutcome.Unavailable, stored.Id, "");
        }
        switch (accepted.Outcome)
        {
            case AcceptOutcome.Duplicate: return new SendResult(SendOutcome.Duplicate, accepted.Id, accepted.Status);
            case AcceptOutcome.OutboxFull: return new SendResult(SendOutcome.OutboxFull, stored.Id, "");
        }
        directory.Known(device);
        if (registry.TryGet(device, out var connection) && connection.Lane is { } lane && !connection.IsClosing
            && lane.Push(stored.ToDeviceMessage(), durable: true, stored.ExpiresAt))
        {
            return new SendResult(SendOutcome.Sent, stored.Id, MessageStatus.Sent);
        }
        return new SendResult(SendOutcome.Queued, stored.Id, MessageStatus.Queued);
    }

    /// <summary>A non-durable message: to the device's lane if it is connected, otherwise nowhere.</summary>
    public SendResult SendNow(string device, DeviceMessage message, string? idempotencyKey = null)
    {
        if (idempotencyKey is not null && book.IdForKey(idempotencyKey) is { } earlier)
        {
            return new SendResult(SendOutcome.Duplicate, earlier, book.Get(earlier, _o.StatusRetention)?.Status ?? MessageStatus.Sent);
        }
        if (!registry.TryGet(device, out var connection) || connection.Lane is not { } lane || connection.IsClosing)
        {
            return new SendResult(SendOutcome.NotConnected, message.Id, "");
        }
        book.Add(message.Id, device, idempotencyKey);
        if (!lane.Push(message, durable: false, expiresAt: null))
        {
            book.Record(message.Id, MessageStatus.Cancelled);
            return new SendResult(SendOutcome.NotConnected, message.Id, "");
        }
        return new SendResult(SendOutcome.Sent, message.Id, MessageStatus.Sent);
    }

    /// <summary>One message per member (each with its own id), except <paramref name="except"/>.</summary>
    /// <returns>Connected members written to, and offline members queued for.</returns>
    public async Task<(int Recipients, int Queued, bool Unavailable)> PublishAsync(string group, MessageData data, string from, TimeSpan ttl, string? except)
    {
        var members = groups.Members(group).Where(m => m != except).ToList();
        var results = await Task.WhenAll(members.Select(m => SendAsync(m, data, from, group, ttl, null))).ConfigureAwait(false);
        return (results.Count(r => r.Outcome == SendOutcome.Sent), results.Count(r => r.Outcome == SendOutcome.Queued),
            results.Any(r => r.Outcome == SendOutcome.Unavailable));
    }

    /// <summary>To every connected device, straight to their sockets (not through lanes, not stored): one encoding per mode.</summary>
    /// <returns>How many connected devices it was queued for.</returns>
    public int Broadcast(DeviceMessage message)
    {
        var recipients = 0;
        foreach (var connection in registry.All)
        {
            if (connection.TryEnqueue(message.For(connection.Mode)) == EnqueueResult.Queued) recipients++;
        }
        metrics.MessagesDelivered.WithLabels(MessageKinds.Broadcast).Inc(recipients);
        return recipients;
    }

    public async Task<MessageRecord?> GetAsync(string id) => book.Get(id, _o.StatusRetention) ?? await store.GetAsync(id).ConfigureAwait(false);

    public async Task<CancelOutcome> CancelAsync(string id)
    {
        var outcome = await store.CancelAsync(id, time.GetUtcNow()).ConfigureAwait(false);
        if (outcome == CancelOutcome.Cancelled && await store.GetAsync(id).ConfigureAwait(false) is { } record
            && registry.TryGet(record.Device, out var connection))
        {
            connection.Lane?.Cancel(id);
        }
        if (outcome == CancelOutcome.NotFound && book.Get(id, _o.StatusRetention) is not null) return CancelOutcome.AlreadySent;
        return outcome;
    }

    // ---- what lanes report --------------------------------------------------------------------------------------

    internal void Sent(string device, DeviceLane.Entry entry, bool final)
    {
        if (entry.Attempts == 1)
        {
            var kind = entry.Message.Group is null ? MessageKinds.Targeted : MessageKinds.Group;
            metrics.MessagesDelivered.WithLabels(kind).Inc();
            metrics.DeliveryLatency.WithLabels(kind).Observe(time.GetElapsedTime(entry.AcceptedAt).TotalSeconds);
        }
        if (entry.Durable) Persist(store.RecordAsync(device, entry.Message.Id, MessageStatus.Sent, final, time.GetUtcNow()));
        else book.Record(entry.Message.Id, MessageStatus.Sent);
    }

    internal void Acked(string device, DeviceLane.Entry entry)
    {
        if (entry.Durable) Persist(store.RecordAsync(device, entry.Message.Id, MessageStatus.Acked, final: true, time.GetUtcNow()));
        else book.Record(entry.Message.Id, MessageStatus.Acked);
        metrics.Acks.Inc();
        events.Acked(device, entry.Message.Id);
    }

    internal void AckedUntracked(string device, string id)
    {
        if (!book.BelongsTo(id, device)) return;
        book.Record(id, MessageStatus.Acked);
        metrics.Acks.Inc();
        events.Acked(device, id);
    }

    private async void Persist(Task write)
    {
        try
        {
            await write.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // Not recorded now means delivered again later: at-least-once holds.
            Log.StoreWriteFailed(logger, e.Message);
        }
    }
}
