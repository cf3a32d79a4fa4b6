using DeviceGate.Events;
using DeviceGate.Sessions;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;

namespace DeviceGate.Delivery;

public enum SendOutcome { Sent, Queued, Duplicate, NotConnected, OutboxFull, QuotaExceeded, Unavailable }

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
    IDeviceDirectory directory,
    IGroupDirectory groups,
    StatusBook book,
    EventHub events,
    IDeviceRouter router,
    GatewayMetrics metrics,
    IOptions<GatewayOptions> options,
    TimeProvider time,
    ILogger<DeliveryService> logger)
{
    private readonly DeliveryOptions _o = options.Value.Delivery;
    private readonly long _deviceStoredBytes = options.Value.Limits.DeviceStoredBytes;

    /// <summary>Idempotency keys name a send to one device: the same key for two devices is two messages.</summary>
    internal static string? ScopedKey(string device, string? key) => key is null ? null : device + "/" + key;

    public DeviceLane CreateLane(DeviceSession connection) =>
        new(connection, this, _o.MaxInFlight, options.Value.Limits.SendQueueMessages, _o.AckTimeout, time);

    public Task<IReadOnlyList<StoredMessage>> LoadPendingAsync(string device) => store.LoadPendingAsync(device, time.GetUtcNow());

    /// <summary>
    /// Sends to one device. With a ttl the message is durable (written before this completes); without, it goes to
    /// the device's live connection (on this node or another) or nowhere.
    /// </summary>
    public async Task<SendResult> SendAsync(string device, MessageData data, string from, string? group, TimeSpan ttl, string? idempotencyKey)
    {
        if (ttl <= TimeSpan.Zero) return await SendNowAsync(device, new DeviceMessage(DeviceMessage.NewId(), from, group, data), idempotencyKey).ConfigureAwait(false);
        return await FinishDurableAsync(BeginDurable(device, data, from, group, ttl, idempotencyKey)).ConfigureAwait(false);
    }

    /// <summary>A durable send whose store write has been queued (it joins the writer's next group commit).</summary>
    internal readonly record struct PendingDurable(StoredMessage Message, Task<AcceptResult> Accepted);

    /// <summary>
    /// Queues the store write of a durable send without waiting for it, so many sends (a batch) share one commit;
    /// <see cref="FinishDurableAsync"/> then routes them in the order they were begun.
    /// </summary>
    internal PendingDurable BeginDurable(string device, MessageData data, string from, string? group, TimeSpan ttl, string? idempotencyKey)
    {
        var now = time.GetUtcNow();
        var stored = new StoredMessage(DeviceMessage.NewId(), device, from, group, data, now, now + ttl);
        // What devices originate is bounded by their stored bytes too (DeviceGate:Limits:DeviceStoredBytes); backends are trusted.
        var maxSenderBytes = from == DeviceId.Server ? long.MaxValue : _deviceStoredBytes;
        return new PendingDurable(stored, store.AcceptAsync(stored, ScopedKey(device, idempotencyKey), _o.MaxQueuedPerDevice, maxSenderBytes));
    }

    internal async Task<SendResult> FinishDurableAsync(PendingDurable pending)
    {
        var (stored, acceptTask) = pending;
        var device = stored.Device;
        AcceptResult accepted;
        try
        {
            accepted = await acceptTask.ConfigureAwait(false);
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
            case AcceptOutcome.QuotaExceeded: return new SendResult(SendOutcome.QuotaExceeded, stored.Id, "");
        }
        directory.Known(device);
        bool routed;
        try
        {
            routed = await router.DeliverAsync(device, stored.ToDeviceMessage(), durable: true, stored.ExpiresAt).ConfigureAwait(false);
        }
        catch (StoreUnavailableException)
        {
            routed = false; // stored: delivered when the device (re)connects
        }
        return routed
            ? new SendResult(SendOutcome.Sent, stored.Id, MessageStatus.Sent)
            : new SendResult(SendOutcome.Queued, stored.Id, MessageStatus.Queued);
    }

    /// <summary>A non-durable message: to the device's live connection if it has one, otherwise nowhere.</summary>
    public async Task<SendResult> SendNowAsync(string device, DeviceMessage message, string? idempotencyKey = null)
    {
        // The key is held for this message while it is tried and kept only if the message was taken: a refused
        // attempt leaves it free for the retry.
        var key = ScopedKey(device, idempotencyKey);
        if (key is not null && !book.TryReserveKey(key, message.Id, out var earlier))
        {
            return new SendResult(SendOutcome.Duplicate, earlier, book.Get(earlier, _o.StatusRetention)?.Status ?? MessageStatus.Sent);
        }
        book.Add(message.Id, device);
        bool routed;
        try
        {
            routed = await router.DeliverAsync(device, message, durable: false, expiresAt: null).ConfigureAwait(false);
        }
        catch (StoreUnavailableException e)
        {
            Log.ClusterError(logger, "route", e.InnerException?.Message ?? e.Message);
            book.Record(message.Id, MessageStatus.Cancelled);
            if (key is not null) book.ReleaseKey(key, message.Id);
            return new SendResult(SendOutcome.Unavailable, message.Id, "");
        }
        if (!routed)
        {
            book.Record(message.Id, MessageStatus.Cancelled);
            if (key is not null) book.ReleaseKey(key, message.Id);
            return new SendResult(SendOutcome.NotConnected, message.Id, "");
        }
        return new SendResult(SendOutcome.Sent, message.Id, MessageStatus.Sent);
    }

    /// <summary>A ttl=0 message another node handed over for a device here: its in-memory status is kept on this node.</summary>
    internal void TrackRemote(string device, DeviceMessage message) => book.Add(message.Id, device);

    /// <summary>What a group message came to: members written to, members queued for, and whether any copy was refused.</summary>
    public readonly record struct PublishResult(int Recipients, int Queued, bool Unavailable, bool QuotaExceeded);

    /// <summary>
    /// One message per member (each with its own id), except <paramref name="except"/>. With a ttl,
    /// <paramref name="durableQuota"/> (when given) is asked first for as many durable messages as there are members;
    /// when it refuses, nothing is sent.
    /// </summary>
    public async Task<PublishResult> PublishAsync(string group, MessageData data, string from, TimeSpan ttl, string? except, Func<int, bool>? durableQuota = null)
    {
        var members = (await groups.MembersAsync(group).ConfigureAwait(false)).Where(m => m != except).ToList();
        if (ttl > TimeSpan.Zero && durableQuota is not null && !durableQuota(members.Count)) return new PublishResult(0, 0, false, QuotaExceeded: true);
        var results = await Task.WhenAll(members.Select(m => SendAsync(m, data, from, group, ttl, null))).ConfigureAwait(false);
        return new PublishResult(results.Count(r => r.Outcome == SendOutcome.Sent), results.Count(r => r.Outcome == SendOutcome.Queued),
            results.Any(r => r.Outcome == SendOutcome.Unavailable), results.Any(r => r.Outcome == SendOutcome.QuotaExceeded));
    }

    /// <summary>To every connected device, straight to their sockets (not through lanes, not stored): one encoding per mode.</summary>
    /// <returns>How many connected devices it was queued for.</returns>
    public Task<int> BroadcastAsync(DeviceMessage message) => router.BroadcastAsync(message);

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

    /// <summary>An ack for a ttl=0 message (not held for its ack): counted and announced once, however often it comes.</summary>
    internal void AckedUntracked(string device, string id)
    {
        if (!book.BelongsTo(id, device) || !book.Record(id, MessageStatus.Acked)) return;
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
