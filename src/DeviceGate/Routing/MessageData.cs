using System.Net.WebSockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace DeviceGate.Routing;

/// <summary>How a payload appears in an envelope: as JSON (<c>data</c>), as a JSON string (<c>data</c>), or as <c>dataBase64</c>.</summary>
public enum DataKind { Json, String, Binary }

/// <summary>
/// A payload in both of its forms: what a raw device receives (exact bytes and frame type) and what goes into an
/// envelope's <c>data</c>/<c>dataBase64</c>. Immutable and shared by every recipient.
/// </summary>
public sealed class MessageData
{
    private MessageData(DataKind kind, ReadOnlyMemory<byte> bytes, ReadOnlyMemory<byte> raw, WebSocketMessageType rawType)
    {
        Kind = kind;
        Bytes = bytes;
        RawPayload = raw;
        RawType = rawType;
    }

    public DataKind Kind { get; }

    /// <summary>JSON text (Json), UTF-8 text (String) or the bytes themselves (Binary).</summary>
    public ReadOnlyMemory<byte> Bytes { get; }

    public ReadOnlyMemory<byte> RawPayload { get; }

    /// <summary>Whether the raw form differs from <see cref="Bytes"/> (a JSON string sent by a device); stores keep it only then.</summary>
    public bool RawDiffers => !RawPayload.Equals(Bytes) && !RawPayload.Span.SequenceEqual(Bytes.Span);
    public WebSocketMessageType RawType { get; }

    public static MessageData Text(byte[] utf8) => new(DataKind.String, utf8, utf8, WebSocketMessageType.Text);

    public static MessageData Binary(byte[] bytes) => new(DataKind.Binary, bytes, bytes, WebSocketMessageType.Binary);

    /// <summary>An API body sent as application/json: raw devices get the body exactly, envelopes embed it.</summary>
    public static MessageData Json(byte[] json) => new(DataKind.Json, json, json, WebSocketMessageType.Text);

    /// <summary>
    /// A device's envelope <c>data</c>: envelopes embed the JSON; a raw device gets the string itself when it is a
    /// JSON string, otherwise the JSON text.
    /// </summary>
    public static MessageData FromEnvelope(JsonElement data)
    {
        var json = JsonMarshal.GetRawUtf8Value(data).ToArray();
        var raw = data.ValueKind == JsonValueKind.String ? Encoding.UTF8.GetBytes(data.GetString()!) : json;
        return new MessageData(DataKind.Json, json, raw, WebSocketMessageType.Text);
    }

    /// <summary>Rebuilds a payload read back from a store.</summary>
    public static MessageData Restore(DataKind kind, byte[] bytes, byte[] raw, bool rawBinary) =>
        new(kind, bytes, raw, rawBinary ? WebSocketMessageType.Binary : WebSocketMessageType.Text);

    /// <summary>Writes <c>"data": ...</c> or <c>"dataBase64": ...</c>.</summary>
    public void WriteTo(Utf8JsonWriter writer)
    {
        switch (Kind)
        {
            case DataKind.Json:
                writer.WritePropertyName("data"u8);
                writer.WriteRawValue(Bytes.Span, skipInputValidation: true);
                break;
            case DataKind.String:
                writer.WriteString("data"u8, Bytes.Span);
                break;
            default:
                writer.WriteBase64String("dataBase64"u8, Bytes.Span);
                break;
        }
    }
}
