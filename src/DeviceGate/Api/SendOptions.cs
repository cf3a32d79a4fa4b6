using System.Globalization;
using DeviceGate.Delivery;

namespace DeviceGate.Api;

/// <summary>The <c>?ttl=</c> and <c>Idempotency-Key</c> of a send, and how its outcome is answered.</summary>
internal static class SendOptions
{
    public const string IdempotencyHeader = "Idempotency-Key";

    /// <summary>Seconds, whole or fractional; absent means DeviceGate:Delivery:DefaultTtl.</summary>
    public static IResult? TryParseTtl(string? text, DeliveryOptions o, out TimeSpan ttl)
    {
        ttl = o.DefaultTtl;
        if (text is null) return null;
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds)) seconds = double.NaN;
        return SendRules.CheckTtl(seconds, o.MaxTtl, out ttl) is { } why ? Problems.BadQuery("ttl", why) : null;
    }

    public static IResult? TryGetIdempotencyKey(HttpRequest request, out string? key)
    {
        key = request.Headers[IdempotencyHeader].ToString();
        if (key.Length == 0)
        {
            key = null;
            return null;
        }
        return SendRules.CheckIdempotencyKey(key) is { } why ? Problems.BadQuery(IdempotencyHeader, why) : null;
    }

    /// <summary>Why the gateway did not take a send, or null when it did (sent, queued, or a duplicate of an earlier one).</summary>
    public static ApiProblem? Refusal(SendOutcome outcome, string deviceId, int maxQueued, string? cause = null) => outcome switch
    {
        SendOutcome.Sent or SendOutcome.Queued or SendOutcome.Duplicate => null,
        SendOutcome.OutboxFull => OutboxFull(deviceId, maxQueued),
        SendOutcome.QuotaExceeded => new ApiProblem(429, "quota_exceeded", "Quota exceeded", "The sender's stored messages are over DeviceGate:Limits:DeviceStoredBytes; nothing was stored.", RetryAfterSeconds: 5),
        SendOutcome.Unavailable => Unavailable(cause ?? "store"),
        _ => Problems.NotConnected(deviceId),
    };

    public static ApiProblem OutboxFull(string deviceId, int max) => new(429, "outbox_full", "Outbox full",
        $"Device '{deviceId}' already has {max} queued messages (DeviceGate:Delivery:MaxQueuedPerDevice); nothing was stored.", RetryAfterSeconds: 5);

    /// <summary>503 <c>store_unavailable</c> with Retry-After; counted in devicegate_store_unavailable_total by <paramref name="cause"/>.</summary>
    public static ApiProblem Unavailable(string cause = "store") => new(503, "store_unavailable", "Store unavailable",
        cause == "replication"
            ? "The write was not confirmed by DeviceGate:Redis:MinReplicas replicas in time: it may or may not survive. A retry with the same Idempotency-Key is safe and returns the same id."
            : "The message store cannot take writes right now; nothing was stored.", RetryAfterSeconds: cause == "replication" ? 1 : 5) { Cause = cause };

    public static ApiProblem Unavailable(Storage.StoreUnavailableException e) => Unavailable(e.Cause);
}
