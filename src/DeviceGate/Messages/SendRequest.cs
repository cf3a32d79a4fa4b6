using System.Globalization;

namespace DeviceGate.Messages;

/// <summary>One send to one device, however it arrived (a single API send, a batch item, an envelope send or publish).</summary>
public readonly record struct SendRequest(string Target, MessageData Data, TimeSpan Ttl, string? IdempotencyKey);

/// <summary>
/// The rules of a send's ttl and idempotency key, in one place for every way a send arrives: each caller turns its
/// own input (a query string, a JSON number) into seconds and asks here; the answer is the same everywhere.
/// </summary>
public static class SendRules
{
    public const int MaxIdempotencyKeyLength = 255;

    /// <summary>Null when <paramref name="seconds"/> is a valid ttl (0 or more, finite, at most <paramref name="maxTtl"/>), otherwise why not.</summary>
    public static string? CheckTtl(double seconds, TimeSpan maxTtl, out TimeSpan ttl)
    {
        ttl = TimeSpan.Zero;
        if (!double.IsFinite(seconds) || seconds < 0) return "ttl is a number of seconds, 0 or more.";
        if (seconds > maxTtl.TotalSeconds) return $"ttl is at most DeviceGate:Delivery:MaxTtl ({maxTtl.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s).";
        ttl = TimeSpan.FromSeconds(seconds);
        return null;
    }

    /// <summary>Null when <paramref name="key"/> is a valid idempotency key (1 to 255 characters), otherwise why not.</summary>
    public static string? CheckIdempotencyKey(string key) =>
        key.Length is >= 1 and <= MaxIdempotencyKeyLength ? null : $"An idempotency key is 1 to {MaxIdempotencyKeyLength} characters.";
}
