using System.Collections.Concurrent;
using System.Text;

namespace DeviceGate.Diagnostics;

/// <summary>
/// Rate-limits log lines that outsiders can cause (handshake refusals, failing read loops): per key, the first
/// occurrence in each interval is logged with the number suppressed since the previous line; the metrics that go
/// with them stay exact. Keys are the gateway's own reason words, a fixed small set, so this holds few entries.
/// </summary>
internal sealed class LogLimiter(TimeProvider time)
{
    private sealed class Window
    {
        public long Start;
        public long Suppressed;
    }

    private readonly ConcurrentDictionary<string, Window> _windows = new(StringComparer.Ordinal);

    /// <summary>True when this occurrence should be logged; <paramref name="suppressed"/> counts those skipped before it.</summary>
    public bool ShouldLog(string key, out long suppressed)
    {
        var w = _windows.GetOrAdd(key, static _ => new Window());
        lock (w)
        {
            var now = time.GetTimestamp();
            if (w.Start != 0 && time.GetElapsedTime(w.Start, now) < Defaults.LogSummaryInterval)
            {
                w.Suppressed++;
                suppressed = 0;
                return false;
            }
            w.Start = now;
            suppressed = w.Suppressed;
            w.Suppressed = 0;
            return true;
        }
    }
}

/// <summary>Makes device-chosen text safe to log: control characters (CR, LF, ESC, C1 and the like) are escaped.</summary>
internal static class LogText
{
    public static string Safe(string? text)
    {
        if (string.IsNullOrEmpty(text)) return text ?? "";
        var clean = true;
        foreach (var c in text)
        {
            if (char.IsControl(c) || c is '\u2028' or '\u2029') { clean = false; break; }
        }
        if (clean) return text;
        var sb = new StringBuilder(text.Length + 16);
        foreach (var c in text)
        {
            if (char.IsControl(c) || c is '\u2028' or '\u2029') sb.Append("\\u").Append(((int)c).ToString("x4", System.Globalization.CultureInfo.InvariantCulture));
            else sb.Append(c);
        }
        return sb.ToString();
    }
}
