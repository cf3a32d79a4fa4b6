using System.Net.WebSockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace DeviceGate.Messages;

/// <summary>How a payload appears in an envelope: as JSON (<c>data</c>), as a JSON string (<c>data</c>), or as <c>dataBase64</c>.</summary>
public enum DataKind { Json, String, Binary }

/// <summary>
/// A payload in both of its forms: what a raw device receives (exact bytes and frame type) and what goes into an
/// envelope's <c>data</c>/<c>dataBase64</c>. Immutable and shared by every recipient. The two forms differ only for
/// a device's envelope <c>data</c> that is a JSON string: the raw form is then the string itself, decoded from
/// <see cref="Bytes"/> when first needed, so only one copy is kept (and stored).
/// </summary>
public sealed class MessageData
{
    private readonly ReadOnlyMemory<byte> _raw;
    private byte[]? _decoded;

    private MessageData(DataKind kind, ReadOnlyMemory<byte> bytes, ReadOnlyMemory<byte> raw, WebSocketMessageType rawType, bool rawIsJsonString)
    {
        Kind = kind;
        Bytes = bytes;
        _raw = raw;
        RawType = rawType;
        RawIsJsonString = rawIsJsonString;
    }

    public DataKind Kind { get; }

    /// <summary>JSON text (Json), UTF-8 text (String) or the bytes themselves (Binary).</summary>
    public ReadOnlyMemory<byte> Bytes { get; }

    /// <summary>What a raw device receives.</summary>
    public ReadOnlyMemory<byte> RawPayload => RawIsJsonString ? _decoded ??= DecodeJsonString(Bytes.Span) : _raw;

    /// <summary>The raw form is the string that <see cref="Bytes"/> (a JSON string) denotes; stores keep a flag, not a copy.</summary>
    public bool RawIsJsonString { get; }

    public WebSocketMessageType RawType { get; }

    public static MessageData Text(byte[] utf8) => new(DataKind.String, utf8, utf8, WebSocketMessageType.Text, false);

    public static MessageData Binary(byte[] bytes) => new(DataKind.Binary, bytes, bytes, WebSocketMessageType.Binary, false);

    /// <summary>What a device sent as bytes: text when they are valid UTF-8 (events show it as <c>data</c>), else binary (<c>dataBase64</c>).</summary>
    public static MessageData TextOrBinary(byte[] bytes) => System.Text.Unicode.Utf8.IsValid(bytes) ? Text(bytes) : Binary(bytes);

    /// <summary>An API body sent as application/json: raw devices get the body exactly, envelopes embed it.</summary>
    public static MessageData Json(byte[] json) => new(DataKind.Json, json, json, WebSocketMessageType.Text, false);

    /// <summary>
    /// A device's envelope <c>data</c>: envelopes embed the JSON; a raw device gets the string itself when it is a
    /// JSON string (EnvelopeReader refused strings that do not decode), otherwise the JSON text.
    /// </summary>
    public static MessageData FromEnvelope(JsonElement data)
    {
        var json = JsonMarshal.GetRawUtf8Value(data).ToArray();
        return new MessageData(DataKind.Json, json, json, WebSocketMessageType.Text, data.ValueKind == JsonValueKind.String);
    }

    /// <summary>Rebuilds a payload read back from a store or the cluster bus.</summary>
    public static MessageData Restore(DataKind kind, byte[] bytes, bool rawBinary, bool rawIsJsonString, byte[]? separateRaw = null) =>
        new(kind, bytes, separateRaw ?? bytes, rawBinary ? WebSocketMessageType.Binary : WebSocketMessageType.Text, rawIsJsonString && separateRaw is null);

    /// <summary>Writes <c>"data": ...</c> or <c>"dataBase64": ...</c>.</summary>
    public void WriteTo(Utf8JsonWriter writer, bool compact = false)
    {
        switch (Kind)
        {
            case DataKind.Json:
                writer.WritePropertyName("data"u8);
                // Compact where one line matters (an SSE data: line): a device's JSON may hold newlines between tokens.
                writer.WriteRawValue(compact ? JsonText.Compact(Bytes.Span) : Bytes.Span, skipInputValidation: true);
                break;
            case DataKind.String:
                writer.WriteString("data"u8, Bytes.Span);
                break;
            default:
                writer.WriteBase64String("dataBase64"u8, Bytes.Span);
                break;
        }
    }

    private static byte[] DecodeJsonString(ReadOnlySpan<byte> json)
    {
        var reader = new Utf8JsonReader(json);
        reader.Read();
        return Encoding.UTF8.GetBytes(reader.GetString()!);
    }
}
