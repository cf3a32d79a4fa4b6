namespace DeviceGate.Messages;

/// <summary>Message statuses, as the API reports them.</summary>
public static class MessageStatus
{
    public const string Queued = "queued";
    public const string Sent = "sent";
    public const string Acked = "acked";
    public const string Expired = "expired";
    public const string Cancelled = "cancelled";

    /// <summary>A desired-state message a newer desired version replaced before the device acked it (never delivered again).</summary>
    public const string Superseded = "superseded";
}

/// <summary>
/// A message accepted for one device, as the outbox keeps it. <see cref="StateVersion"/> &gt; 0 marks a desired-state
/// message (its data is the whole <c>state</c> envelope); a device has at most one of those pending (latest wins).
/// </summary>
public sealed record StoredMessage(
    string Id,
    string Device,
    string From,
    string? Group,
    MessageData Data,
    DateTimeOffset CreatedAt,
    DateTimeOffset ExpiresAt,
    int Attempts = 0,
    long StateVersion = 0)
{
    public DeviceMessage ToDeviceMessage() => new(Id, From, Group, Data, StateVersion);
}

public sealed record StatusChange(string Status, DateTimeOffset At)
{
    /// <summary>A history holding its first entry, as both stores write it.</summary>
    public static string FirstHistoryJson(string status, DateTimeOffset at) => $"[{{\"status\":\"{status}\",\"at\":\"{Timestamps.Iso(at)}\"}}]";

    /// <summary>Reads the <c>[{"status","at"}]</c> history both stores keep as JSON text.</summary>
    public static List<StatusChange> ParseHistory(string json)
    {
        var history = new List<StatusChange>();
        using var doc = System.Text.Json.JsonDocument.Parse(json);
        foreach (var e in doc.RootElement.EnumerateArray())
        {
            history.Add(new StatusChange(e.GetProperty("status").GetString()!,
                DateTimeOffset.Parse(e.GetProperty("at").GetString()!, System.Globalization.CultureInfo.InvariantCulture)));
        }
        return history;
    }
}

/// <summary>What <c>GET /api/messages/{id}</c> returns.</summary>
public sealed record MessageRecord(
    string Id,
    string Device,
    string Status,
    DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt,
    int Attempts,
    IReadOnlyList<StatusChange> History);
