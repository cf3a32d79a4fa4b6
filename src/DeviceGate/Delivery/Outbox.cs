using DeviceGate.Sessions;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;

namespace DeviceGate.Delivery;

/// <summary>
/// Durable sends (ttl &gt; 0): accepted into the store before anything is answered, then handed to the router
/// (delivered now if the device is connected, otherwise when it connects); and their status, cancel and backlog.
/// </summary>
internal sealed class Outbox(IMessageStore store, IDeviceRouter router, IDeviceDirectory directory, IEnumerable<IOwedMessages> owed,
    IOptions<GatewayOptions> options, TimeProvider time, ILogger<Outbox> logger)
{
    private readonly IOwedMessages[] _owed = owed.ToArray();
    private readonly DeliveryOptions _o = options.Value.Delivery;
    private readonly long _deviceStoredBytes = options.Value.Limits.DeviceStoredBytes;

    /// <summary>
    /// A new session's backlog: the device's stored messages not yet acked, expired or cancelled, in acceptance order,
    /// then (sessions that take desired state) what it is owed that no pending message carries (its desired state).
    /// </summary>
    public async Task<IReadOnlyList<StoredMessage>> LoadPendingAsync(DeviceSession session)
    {
        var pending = await store.LoadPendingAsync(session.DeviceId, time.GetUtcNow()).ConfigureAwait(false);
        if (!session.TakesState) return pending;
        foreach (var source in _owed)
        {
            if (await source.OwedAsync(session.DeviceId, pending).ConfigureAwait(false) is { } message) pending = [.. pending, message];
        }
        return pending;
    }

    /// <summary>
    /// Stores a desired-state message (latest wins: it supersedes the device's pending one) and hands it to the
    /// device wherever it is connected. False when the store had a newer one already (it is stored superseded).
    /// </summary>
    public async Task<bool> AcceptStateAsync(StoredMessage message)
    {
        var accepted = await store.AcceptAsync(message, null, int.MaxValue).ConfigureAwait(false);
        if (accepted.Outcome != AcceptOutcome.Accepted) return false;
        // Like any message queued for it, a desired state makes the device known.
        directory.Known(message.Device);
        try
        {
            await router.DeliverAsync(message.Device, message.ToDeviceMessage(), durable: true, message.ExpiresAt).ConfigureAwait(false);
        }
        catch (StoreUnavailableException)
        {
            // Stored: delivered when the device (re)connects.
        }
        return true;
    }

    /// <summary>A durable send whose store write has been queued (it joins the writer's next group commit).</summary>
    internal readonly record struct PendingDurable(StoredMessage Message, Task<AcceptResult> Accepted, System.Diagnostics.Activity? Commit);

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
        // The commit's span starts before the write is queued, so the store's own work (a Redis script) is its child;
        // the caller's span stays current for what it does next, and FinishDurableAsync ends this one.
        var caller = System.Diagnostics.Activity.Current;
        var commit = Telemetry.Source.StartActivity("DeviceGate store commit");
        try
        {
            return new PendingDurable(stored, store.AcceptAsync(stored, DeliveryService.ScopedKey(device, idempotencyKey), _o.MaxQueuedPerDevice, maxSenderBytes), commit);
        }
        finally
        {
            if (commit is not null) System.Diagnostics.Activity.Current = caller;
        }
    }

    internal async Task<SendResult> FinishDurableAsync(PendingDurable pending)
    {
        var (stored, acceptTask, commitSpan) = pending;
        var device = stored.Device;
        AcceptResult accepted;
        try
        {
            using var commit = commitSpan;
            accepted = await acceptTask.ConfigureAwait(false);
        }
        catch (StoreUnavailableException e)
        {
            Log.StoreWriteFailed(logger, e.InnerException?.Message ?? e.Message);
            return new SendResult(SendOutcome.Unavailable, stored.Id, "", e.Cause);
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
            using var route = Telemetry.Source.StartActivity("DeviceGate route");
            var message = stored.ToDeviceMessage();
            if (System.Diagnostics.Activity.Current is { } current) message.Trace = current.Context;
            routed = await router.DeliverAsync(device, message, durable: true, stored.ExpiresAt).ConfigureAwait(false);
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

/// <summary>
/// What a device is owed beyond its stored messages, added to an envelope session's backlog when it starts; the
/// desired state (State) is one: a message that expired, was cancelled or never got written is made again.
/// </summary>
internal interface IOwedMessages
{
    /// <summary>A message to append to <paramref name="pending"/> (stored before it is returned), or null.</summary>
    Task<StoredMessage?> OwedAsync(string device, IReadOnlyList<StoredMessage> pending);
}
