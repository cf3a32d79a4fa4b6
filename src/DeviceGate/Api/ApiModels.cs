using System.Text.Json;
using System.Text.Json.Serialization;

namespace DeviceGate.Api;

public sealed record SendResponse(string Id, string Status);

public sealed record RecipientsResponse(int Recipients, int Queued);

public sealed record StatusChangeResponse(string Status, DateTimeOffset At);

public sealed record MessageResponse(
    string Id,
    string Device,
    string Status,
    DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt,
    int Attempts,
    IReadOnlyList<StatusChangeResponse> History);

public sealed record GroupResponse(string Group, IReadOnlyList<string> Devices);

public sealed record DeviceSummary(string Id, DateTimeOffset? ConnectedAt, string? Node, bool Online = true, DateTimeOffset? LastSeen = null);

public sealed record GroupSummary(string Group, int Members);

public sealed record GroupListResponse(IReadOnlyList<GroupSummary> Groups, string? Next);

public sealed record DeviceMessagesResponse(IReadOnlyList<MessageResponse> Messages);


public sealed record StatsResponse(IReadOnlyList<NodeStats> Nodes);

public sealed record DeviceListResponse(IReadOnlyList<DeviceSummary> Devices, string? Next);

public sealed record DeviceResponse(
    string Id,
    bool Online,
    DateTimeOffset? ConnectedAt,
    DateTimeOffset? LastSeen,
    string Node,
    IReadOnlyList<string> Groups,
    int Queued,
    IReadOnlyDictionary<string, string> Tags,
    string? Transport,
    string? Protocol);

public sealed record HealthResponse(string Status);

public sealed record WhoAmIResponse(string Name, IReadOnlyList<string> Scopes);

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, Converters = [typeof(UtcTimestampConverter)])]
[JsonSerializable(typeof(SendResponse))]
[JsonSerializable(typeof(RecipientsResponse))]
[JsonSerializable(typeof(GroupResponse))]
[JsonSerializable(typeof(DeviceListResponse))]
[JsonSerializable(typeof(DeviceResponse))]
[JsonSerializable(typeof(WhoAmIResponse))]
[JsonSerializable(typeof(HealthResponse))]
[JsonSerializable(typeof(MessageResponse))]
[JsonSerializable(typeof(GroupListResponse))]
[JsonSerializable(typeof(DeviceMessagesResponse))]
[JsonSerializable(typeof(StatsResponse))]
[JsonSerializable(typeof(NodeStats))]
internal sealed partial class ApiJsonContext : JsonSerializerContext;
