using System.Text.Json;
using System.Text.Json.Serialization;

namespace DeviceGate.Cluster;

/// <summary>What travels between nodes on the Redis channels. One shape for every kind, by <see cref="Type"/>.</summary>
internal sealed record BusMessage
{
    public const string Deliver = "deliver";
    public const string Broadcast = "broadcast";
    public const string Close = "close";

    /// <summary>The answer to a close: the node no longer holds a session of the device up to that epoch.</summary>
    public const string Closed = "closed";
    public const string Rpc = "rpc";
    public const string RpcReply = "rpc-reply";

    public required string Type { get; init; }
    public string? Origin { get; init; }
    public string? Device { get; init; }

    // A message (deliver, broadcast, rpc)
    public string? Id { get; init; }
    public string? From { get; init; }
    public string? Group { get; init; }
    public int Kind { get; init; }
    public byte[]? Data { get; init; }
    public bool RawIsJsonString { get; init; }
    public bool RawBinary { get; init; }
    public bool Durable { get; init; }
    public long Expires { get; init; }
    public long StateVersion { get; init; }

    /// <summary>The W3C traceparent of the send that made the message (when it was traced): the delivering node's spans join its trace.</summary>
    public string? TraceParent { get; init; }

    // close
    public long Epoch { get; init; }
    public int Code { get; init; }
    public string? Reason { get; init; }

    // rpc / rpc-reply
    public string? ReplyTo { get; init; }
    public double TimeoutSeconds { get; init; }
    public byte[]? ReplyJson { get; init; }
    public string? ErrorCode { get; init; }
    public string? ErrorMessage { get; init; }
    public string? Failure { get; init; }
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingDefault)]
[JsonSerializable(typeof(BusMessage))]
internal sealed partial class BusJsonContext : JsonSerializerContext;
