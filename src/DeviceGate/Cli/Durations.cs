using System.Globalization;

namespace DeviceGate.Cli;

/// <summary>Parses the CLI's short durations: <c>90s</c>, <c>30m</c>, <c>12h</c>, <c>7d</c> (a bare number is seconds).</summary>
public static class Durations
{
    public static bool TryParse(string? text, out TimeSpan value)
    {
        value = default;
        if (string.IsNullOrWhiteSpace(text)) return false;
        text = text.Trim();
        var unit = char.ToLowerInvariant(text[^1]);
        var number = char.IsAsciiLetter(unit) ? text[..^1] : text;
        if (!double.TryParse(number, NumberStyles.Float, CultureInfo.InvariantCulture, out var n) || n <= 0 || double.IsInfinity(n)) return false;
        var seconds = unit switch
        {
            's' or >= '0' and <= '9' => n,
            'm' => n * 60,
            'h' => n * 3600,
            'd' => n * 86400,
            _ => double.NaN,
        };
        if (double.IsNaN(seconds) || seconds > TimeSpan.MaxValue.TotalSeconds / 2) return false;
        value = TimeSpan.FromSeconds(seconds);
        return true;
    }
}
