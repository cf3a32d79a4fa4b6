using DeviceGate.Storage;
using Microsoft.Extensions.Options;

namespace DeviceGate.Delivery;

/// <summary>
/// Durable sends (ttl &gt; 0): accepted into the store before anything is answered, then handed to the router
/// (delivered now if the device is connected, otherwise when it connects); and their status, cancel and backlog.
/// </summary>
internal sealed class Outbox(IMessageStore store, IDeviceRouter router, IDeviceDirectory directory, IOptions<GatewayOptions> options, TimeProvider time, ILogger<Outbox> logger)
{
    private readonly DeliveryOptions _o = options.Value.Delivery;
    private readonly long _deviceStoredBytes = options.Value.Limits.DeviceStoredBytes;

    /// <summary>The device's stored messages not yet acked, expired or cancelled, in acceptance order.</summary>
    public Task<IReadOnlyList<StoredMessage>> LoadPendingAsync(string device) => store.LoadPendingAsync(device, time.GetUtcNow());

    /// <summary>A durable send whose store write has been queued (it joins the writer's next group commit).</summary>
    internal readonly record struct PendingDurable(StoredMessage Message, Task<AcceptResult> Accepted);

    /// <summary>
    /// Queues the store write of a durable send without waiting for it, so many sends (a batch) share one commit;
    /// <see cref="FinishDurableAsync"/> then routes them in the order they were begun.
    /// </summary>
    internal PendingDurable BeginDurable(SendRequest send, string from, string? group)
    {
        var (device, data, ttl, idempotencyKey) = send;
        var now = time.GetUtcNow();
        var stored = new StoredMessage(DeviceMessage.NewId(), device, from, group, data, now, now + ttl);
        // What devices originate is bounded by their stored bytes too (DeviceGate:Limits:DeviceStoredBytes); backends are trusted.
        var maxSenderBytes = from == DeviceId.Server ? long.MaxValue : _deviceStoredBytes;
        return new PendingDurable(stored, store.AcceptAsync(stored, DeliveryService.ScopedKey(device, idempotencyKey), _o.MaxQueuedPerDevice, maxSenderBytes));
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

    public Task<MessageRecord?> GetAsync(string id) => store.GetAsync(id);

    public Task<CancelOutcome> CancelAsync(string id) => store.CancelAsync(id, time.GetUtcNow());
}
