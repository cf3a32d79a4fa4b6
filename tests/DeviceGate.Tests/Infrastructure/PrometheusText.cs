using System.Globalization;

namespace DeviceGate.Tests.Infrastructure;

/// <summary>Reads sample values out of Prometheus text exposition.</summary>
public static class PrometheusText
{
    /// <summary>The value of the sample whose name-and-labels part is exactly <paramref name="series"/> (0 when absent).</summary>
    public static double Value(string text, string series)
    {
        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith('#')) continue;
            var space = line.LastIndexOf(' ');
            if (space > 0 && line[..space] == series) return double.Parse(line[(space + 1)..], CultureInfo.InvariantCulture);
        }
        return 0;
    }

    /// <summary>The TYPE line's type for a metric family.</summary>
    public static string? Type(string text, string family) =>
        text.Split('\n').FirstOrDefault(l => l.StartsWith($"# TYPE {family} ", StringComparison.Ordinal))?.Split(' ')[3];
}
