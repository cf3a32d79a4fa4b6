using System.Security.Cryptography;
using System.Text;

namespace DeviceGate.Webhooks;

/// <summary>
/// <c>X-DeviceGate-Signature: sha256=&lt;hex HMAC-SHA256 of "&lt;timestamp&gt;.&lt;body&gt;"&gt;</c>, keyed with
/// DeviceGate:Webhooks:Secret. The timestamp (unix seconds) is in <c>X-DeviceGate-Timestamp</c>.
/// </summary>
public static class WebhookSigner
{
    public const string TimestampHeader = "X-DeviceGate-Timestamp";
    public const string SignatureHeader = "X-DeviceGate-Signature";

    public static string Sign(string secret, long timestamp, ReadOnlySpan<byte> body)
    {
        var prefix = Encoding.UTF8.GetBytes(timestamp.ToString(System.Globalization.CultureInfo.InvariantCulture) + ".");
        var signed = new byte[prefix.Length + body.Length];
        prefix.CopyTo(signed, 0);
        body.CopyTo(signed.AsSpan(prefix.Length));
        return "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), signed));
    }

    /// <summary>What a receiver does: recompute and compare in constant time (and reject old timestamps).</summary>
    public static bool Verify(string secret, string timestamp, ReadOnlySpan<byte> body, string signature)
    {
        if (!long.TryParse(timestamp, out var ts)) return false;
        var expected = Encoding.ASCII.GetBytes(Sign(secret, ts, body));
        return CryptographicOperations.FixedTimeEquals(expected, Encoding.ASCII.GetBytes(signature));
    }
}
