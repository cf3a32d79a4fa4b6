using DeviceGate.Sessions;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;

namespace DeviceGate.Delivery;

public enum SendOutcome { Sent, Queued, Duplicate, NotConnected, OutboxFull, QuotaExceeded, Unavailable }

/// <summary>What a send came to: the message id and the status to report.</summary>
/// <summary>What became of a send; <c>Cause</c>, for <see cref="SendOutcome.Unavailable"/>, says why (<see cref="Storage.StoreUnavailableException.Cause"/>).</summary>
public readonly record struct SendResult(SendOutcome Outcome, string Id, string Status, string? Cause = null);

/// <summary>
/// The front of delivery: a send with a ttl goes through the <see cref="Outbox"/> (stored first), one without
/// straight to the router (a connected device or nowhere, its status in the <see cref="StatusBook"/>); group
/// messages become one send per member; lanes report to the <see cref="DeliveryTracker"/>.
/// </summary>
internal sealed class DeliveryService(
    Outbox outbox,
    StatusBook book,
    IDeviceRouter router,
    IGroupDirectory groups,
    ConnectionRegistry registry,
    IOptions<GatewayOptions> options)
{
    private readonly DeliveryOptions _o = options.Value.Delivery;

    /// <summary>Idempotency keys name a send to one device: the same key for two devices is two messages.</summary>
    internal static string? ScopedKey(string device, string? key) => key is null ? null : device + "/" + key;

    /// <summary>
    /// Sends to one device. With a ttl the message is durable (written before this completes); without, it goes to
    /// the device's live connection (on this node or another) or nowhere.
    /// </summary>
    public async Task<SendResult> SendAsync(SendRequest send, string from, string? group = null)
    {
        using var span = Telemetry.Source.StartActivity("DeviceGate send");
        span?.SetTag("devicegate.device", send.Target);
        span?.SetTag("devicegate.durable", send.Ttl > TimeSpan.Zero);
        if (send.Ttl <= TimeSpan.Zero)
        {
            return await SendNowAsync(send.Target, new DeviceMessage(DeviceMessage.NewId(), from, group, send.Data), send.IdempotencyKey).ConfigureAwait(false);
        }
        return await outbox.FinishDurableAsync(outbox.BeginDurable(send, from, group)).ConfigureAwait(false);
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
        if (System.Diagnostics.Activity.Current is { } current) message.Trace = current.Context;
        bool routed;
        try
        {
            using var route = Telemetry.Source.StartActivity("DeviceGate route");
            routed = await router.DeliverAsync(device, message, durable: false, expiresAt: null).ConfigureAwait(false);
        }
        catch (StoreUnavailableException)
        {
            // Counted where it is answered (503): devicegate_store_unavailable_total.
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
        var results = await Task.WhenAll(members.Select(m => SendAsync(new SendRequest(m, data, ttl, null), from, group))).ConfigureAwait(false);
        return new PublishResult(results.Count(r => r.Outcome == SendOutcome.Sent), results.Count(r => r.Outcome == SendOutcome.Queued),
            results.Any(r => r.Outcome == SendOutcome.Unavailable), results.Any(r => r.Outcome == SendOutcome.QuotaExceeded));
    }

    /// <summary>To every connected device, straight to their sockets (not through lanes, not stored): one encoding per mode.</summary>
    /// <returns>How many connected devices it was queued for.</returns>
    public Task<int> BroadcastAsync(DeviceMessage message) => router.BroadcastAsync(message);

    public async Task<MessageRecord?> GetAsync(string id) => book.Get(id, _o.StatusRetention) ?? await outbox.GetAsync(id).ConfigureAwait(false);

    public async Task<CancelOutcome> CancelAsync(string id)
    {
        var outcome = await outbox.CancelAsync(id).ConfigureAwait(false);
        if (outcome == CancelOutcome.Cancelled && await outbox.GetAsync(id).ConfigureAwait(false) is { } record
            && registry.TryGet(record.Device, out var session))
        {
            session.Lane?.Cancel(id);
        }
        if (outcome == CancelOutcome.NotFound && book.Get(id, _o.StatusRetention) is not null) return CancelOutcome.AlreadySent;
        return outcome;
    }
}
