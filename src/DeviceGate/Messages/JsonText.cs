using System.Text.Json;

namespace DeviceGate.Messages;

/// <summary>
/// Reads JSON strings that a device or a caller wrote. System.Text.Json parses <c>"\ud800"</c> (a lone surrogate
/// escape) without complaint and only throws when the string is decoded; every decode of outside input goes through
/// here so that such a string is a refusal, never an exception in a read loop or a request.
/// </summary>
public static class JsonText
{
    /// <summary>The string value; false when <paramref name="e"/> is not a string or does not decode to valid UTF-16.</summary>
    public static bool TryGetString(JsonElement e, out string value)
    {
        value = "";
        if (e.ValueKind != JsonValueKind.String) return false;
        try
        {
            value = e.GetString()!;
            return true;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>The string of property <paramref name="name"/>, or null when it is absent, not a string, or undecodable.</summary>
    public static string? StringOrNull(JsonElement obj, ReadOnlySpan<byte> name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var e) && TryGetString(e, out var s) ? s : null;

    /// <summary>
    /// Copies JSON text without the whitespace between tokens (strings are copied as they are, escapes included), so
    /// a device's <c>data</c> fits on one SSE <c>data:</c> line. The input must be valid JSON (it was parsed already).
    /// </summary>
    public static byte[] Compact(ReadOnlySpan<byte> json)
    {
        if (json.IndexOfAny(" \t\r\n"u8) < 0) return json.ToArray();
        var output = new byte[json.Length];
        var n = 0;
        var inString = false;
        for (var i = 0; i < json.Length; i++)
        {
            var b = json[i];
            if (inString)
            {
                output[n++] = b;
                if (b == (byte)'\\' && i + 1 < json.Length) output[n++] = json[++i];
                else if (b == (byte)'"') inString = false;
                continue;
            }
            if (b is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n') continue;
            if (b == (byte)'"') inString = true;
            output[n++] = b;
        }
        return output.AsSpan(0, n).ToArray();
    }
}
