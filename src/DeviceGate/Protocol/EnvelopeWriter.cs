using System.Buffers;
using System.Text.Json;

namespace DeviceGate.Protocol;

/// <summary>Encodes the server-to-device envelopes with Utf8JsonWriter: no reflection, one buffer per envelope.</summary>
public static class EnvelopeWriter
{
    [ThreadStatic]
    private static ArrayBufferWriter<byte>? t_buffer;

    /// <summary>A <c>message</c>; with <paramref name="traceParent"/> (DeviceGate:Telemetry:PropagateToDevices), its trace context too.</summary>
    public static byte[] Message(DeviceMessage m, string? traceParent = null) => Write((m, traceParent), static (w, s) =>
    {
        var m = s.m;
        w.WriteString("type"u8, EnvelopeTypes.Message);
        w.WriteString("id"u8, m.Id);
        w.WriteString("from"u8, m.From);
        if (m.Group is not null) w.WriteString("group"u8, m.Group);
        if (s.traceParent is not null) w.WriteString("traceparent"u8, s.traceParent);
        m.Data.WriteTo(w);
    });

    public static byte[] Rpc(string id, MessageData data, string? traceParent = null) => Write((id, data, traceParent), static (w, s) =>
    {
        w.WriteString("type"u8, EnvelopeTypes.Rpc);
        w.WriteString("id"u8, s.id);
        if (s.traceParent is not null) w.WriteString("traceparent"u8, s.traceParent);
        s.data.WriteTo(w);
    });

    /// <summary>An rpc request for an MQTT 3.1.1 device (no correlation data there): <c>{"id","data"}</c> on <c>devices/{id}/rpc</c>.</summary>
    public static byte[] MqttRpc(string id, MessageData data) => Write((id, data), static (w, s) =>
    {
        w.WriteString("id"u8, s.id);
        s.data.WriteTo(w);
    });

    /// <summary>
    /// The desired-state message: the whole desired document and the delta against reported, both compact JSON
    /// objects, at desired version <paramref name="version"/>.
    /// </summary>
    public static byte[] State(string id, long version, string desired, string delta) => Write((id, version, desired, delta), static (w, s) =>
    {
        w.WriteString("type"u8, EnvelopeTypes.State);
        w.WriteString("id"u8, s.id);
        w.WriteNumber("version"u8, s.version);
        w.WritePropertyName("desired"u8);
        w.WriteRawValue(s.desired, skipInputValidation: true);
        w.WritePropertyName("delta"u8);
        w.WriteRawValue(s.delta, skipInputValidation: true);
    });

    /// <summary>The answer to a <c>report</c>: the reported part's version after it.</summary>
    public static byte[] Reported(string? @ref, long version) => Write((@ref, version), static (w, s) =>
    {
        w.WriteString("type"u8, EnvelopeTypes.Reported);
        w.WriteNumber("version"u8, s.version);
        if (s.@ref is not null) w.WriteString("ref"u8, s.@ref);
    });

    public static byte[] Sent(string? @ref, string id, string status) => Write((@ref, id, status), static (w, s) =>
    {
        w.WriteString("type"u8, EnvelopeTypes.Sent);
        if (s.@ref is not null) w.WriteString("ref"u8, s.@ref);
        w.WriteString("id"u8, s.id);
        w.WriteString("status"u8, s.status);
    });

    public static byte[] Error(string code, string message, string? @ref) => Write((code, message, @ref), static (w, s) =>
    {
        w.WriteString("type"u8, EnvelopeTypes.Error);
        w.WriteString("code"u8, s.code);
        w.WriteString("message"u8, s.message);
        if (s.@ref is not null) w.WriteString("ref"u8, s.@ref);
    });

    private static byte[] Write<T>(T state, Action<Utf8JsonWriter, T> body)
    {
        var buffer = t_buffer ??= new ArrayBufferWriter<byte>(256);
        buffer.ResetWrittenCount();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { SkipValidation = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            body(writer, state);
            writer.WriteEndObject();
        }
        var bytes = buffer.WrittenSpan.ToArray();
        if (buffer.Capacity > 64 * 1024) t_buffer = null;
        return bytes;
    }
}
