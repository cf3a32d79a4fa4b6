using System.Globalization;

namespace DeviceGate.Messages;

/// <summary>The one wire format for timestamps: ISO 8601 UTC with a <c>Z</c> and millisecond precision.</summary>
public static class Timestamps
{
    public static string Iso(DateTimeOffset value) => value.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
}
