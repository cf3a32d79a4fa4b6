using System.Buffers;
using System.Text.Json;

namespace DeviceGate.Events;

/// <summary>The <c>type</c> of each event on the stream and in webhooks.</summary>
public static class EventTypes
{
    public const string Connected = "connected";
    public const string Disconnected = "disconnected";
    public const string Message = "message";
    public const string Acked = "acked";
    public const string Expired = "expired";
    public const string State = "state";
    public const string Reset = "reset";
    public static readonly string[] All = [Connected, Disconnected, Message, Acked, Expired, State];
}

/// <summary>One event, serialized once (its JSON is shared by every reader and the webhook batch).</summary>
public sealed class GatewayEvent
{
    private GatewayEvent(long id, string type, string? device, string node, byte[] json)
    {
        Id = id;
        Type = type;
        Device = device;
        Node = node;
        Json = json;
    }

    /// <summary>The node where it happened (webhooks are sent from there only).</summary>
    public string Node { get; }

    /// <summary>An event as another node published it (its JSON carries everything).</summary>
    public static GatewayEvent FromJson(byte[] json)
    {
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        return new GatewayEvent(root.GetProperty("seq").GetInt64(), root.GetProperty("type").GetString()!,
            root.TryGetProperty("device", out var d) ? d.GetString() : null, root.TryGetProperty("node", out var n) ? n.GetString() ?? "" : "", json);
    }

    public long Id { get; }
    public string Type { get; }
    public string? Device { get; }

    /// <summary>The event object: <c>{"seq","type","device","at",...}</c>.</summary>
    public byte[] Json { get; }

    public static GatewayEvent Connected(long id, string node, string device, DateTimeOffset at) =>
        Create(id, node, EventTypes.Connected, device, at, static (_, _) => { }, 0);

    /// <summary><paramref name="by"/> says who closed: <c>device</c> (it sent the first close frame) or <c>server</c>.</summary>
    public static GatewayEvent Disconnected(long id, string node, string device, DateTimeOffset at, int code, string reason, string by) =>
        Create(id, node, EventTypes.Disconnected, device, at, static (w, s) =>
        {
            w.WriteNumber("code"u8, s.code);
            w.WriteString("reason"u8, s.reason);
            w.WriteString("by"u8, s.by);
        }, (code, reason, by));

    /// <summary>
    /// What a device said; its JSON is written compact, so the event stays one SSE data: line. With
    /// <paramref name="traceParent"/>, the trace the device's envelope continued (DeviceGate:Telemetry:PropagateToDevices).
    /// </summary>
    /// <param name="id">The event's number.</param>
    /// <param name="node">Where it happened.</param>
    /// <param name="device">Who said it.</param>
    /// <param name="at">When.</param>
    /// <param name="data">What it said.</param>
    /// <param name="traceParent">The trace it continued, if any.</param>
    /// <param name="topic">For an MQTT device: the part of its topic after <c>devices/{id}/events</c> ("" for the bare topic).</param>
    /// <param name="will">An MQTT device's will, published because it dropped.</param>
    public static GatewayEvent Message(long id, string node, string device, DateTimeOffset at, MessageData data, string? traceParent = null, string? topic = null, bool will = false) =>
        Create(id, node, EventTypes.Message, device, at, static (w, s) =>
        {
            if (s.topic is not null) w.WriteString("topic"u8, s.topic);
            if (s.will) w.WriteBoolean("will"u8, true);
            if (s.traceParent is not null) w.WriteString("traceparent"u8, s.traceParent);
            s.data.WriteTo(w, compact: true);
        }, (data, traceParent, topic, will));

    /// <summary><c>acked</c> and <c>expired</c>: <c>{device, id, at}</c>, where <c>id</c> is the message id.</summary>
    /// <summary><c>state</c>: <c>{device, part, version, patch}</c>: a part of the device's state changed by <c>patch</c> (compact JSON).</summary>
    public static GatewayEvent StateChanged(long id, string node, string device, DateTimeOffset at, string part, long version, string patchJson) =>
        Create(id, node, EventTypes.State, device, at, static (w, s) =>
        {
            w.WriteString("part"u8, s.part);
            w.WriteNumber("version"u8, s.version);
            w.WritePropertyName("patch"u8);
            w.WriteRawValue(s.patchJson, skipInputValidation: true);
        }, (part, version, patchJson));

    public static GatewayEvent ForMessage(long id, string node, string type, string device, string messageId, DateTimeOffset at) =>
        Create(id, node, type, device, at, static (w, m) => w.WriteString("id"u8, m), messageId);

    public static GatewayEvent Reset(long id, string node, DateTimeOffset at) =>
        Create(id, node, EventTypes.Reset, null, at, static (_, _) => { }, 0);

    // Events are JSON on an SSE line or in a webhook body, never HTML: the default encoder's escaping of <, >, & and
    // non-ASCII would only make them bigger (a 64 KB message of '<' became 393 KB).
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static GatewayEvent Create<T>(long id, string node, string type, string? device, DateTimeOffset at, Action<Utf8JsonWriter, T> body, T state)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            w.WriteStartObject();
            // The event's own number is "seq" (also the SSE id: line); "id" is left for message ids (acked, expired).
            w.WriteNumber("seq"u8, id);
            w.WriteString("type"u8, type);
            if (device is not null) w.WriteString("device"u8, device);
            w.WriteString("at"u8, Timestamps.Iso(at));
            w.WriteString("node"u8, node);
            body(w, state);
            w.WriteEndObject();
        }
        return new GatewayEvent(id, type, device, node, buffer.WrittenSpan.ToArray());
    }
}
