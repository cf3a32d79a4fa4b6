using System.Buffers;
using System.IO.Pipelines;
using System.Text.Json;
using System.Text.Unicode;
using Microsoft.Net.Http.Headers;

namespace DeviceGate.Api;

/// <summary>
/// Reads an API body into one payload: <c>application/octet-stream</c> is binary, <c>application/json</c> is JSON
/// (validated), anything else is UTF-8 text.
/// </summary>
internal static class MessageBody
{
    public const string OctetStream = "application/octet-stream";
    public const string Json = "application/json";

    /// <summary>The payload, or a problem result (413 over the limit, 400 for bad UTF-8 or JSON).</summary>
    public static async Task<(MessageData Data, IResult? Problem)> ReadAsync(HttpRequest request, int maxBytes)
    {
        var bytes = await ReadBytesAsync(request, maxBytes).ConfigureAwait(false);
        if (bytes is null) return (null!, TooLarge(maxBytes));

        var mediaType = MediaType(request.ContentType);
        if (mediaType.Equals(OctetStream, StringComparison.OrdinalIgnoreCase)) return (MessageData.Binary(bytes), null);
        if (!Utf8.IsValid(bytes))
        {
            return (null!, Results.Problem(statusCode: 400, title: "Body is not valid UTF-8",
                detail: "Send text as UTF-8, or binary with Content-Type: application/octet-stream.",
                type: "invalid_utf8"));
        }
        if (mediaType.Equals(Json, StringComparison.OrdinalIgnoreCase))
        {
            return IsJson(bytes) ? (MessageData.Json(bytes), null) : (null!, Results.Problem(statusCode: 400, title: "Body is not valid JSON",
                detail: "A body sent as application/json must be one JSON value; send other text as text/plain.",
                type: "invalid_json"));
        }
        return (MessageData.Text(bytes), null);
    }

    /// <summary>The whole body, or null when it is longer than <paramref name="maxBytes"/> (nothing beyond it is buffered).</summary>
    public static async Task<byte[]?> ReadBytesAsync(HttpRequest request, long maxBytes)
    {
        if (request.ContentLength > maxBytes) return null;
        var reader = request.BodyReader;
        ReadResult read;
        while (true)
        {
            read = await reader.ReadAsync(request.HttpContext.RequestAborted).ConfigureAwait(false);
            if (read.Buffer.Length > maxBytes)
            {
                reader.AdvanceTo(read.Buffer.Start, read.Buffer.End);
                return null;
            }
            if (read.IsCompleted) break;
            reader.AdvanceTo(read.Buffer.Start, read.Buffer.End);
        }
        var bytes = read.Buffer.ToArray();
        reader.AdvanceTo(read.Buffer.End);
        return bytes;
    }

    internal static string MediaType(string? contentType) =>
        contentType is not null && MediaTypeHeaderValue.TryParse(contentType, out var media) && media.MediaType.HasValue ? media.MediaType.Value! : "";

    private static bool IsJson(ReadOnlySpan<byte> bytes)
    {
        var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { MaxDepth = Protocol.EnvelopeReader.MaxDepth });
        try
        {
            while (reader.Read())
            {
            }
            return reader.BytesConsumed > 0;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static IResult TooLarge(int maxBytes) => Results.Problem(statusCode: 413, title: "Message too large",
        detail: $"The body exceeds DeviceGate:Limits:MaxMessageBytes ({maxBytes} bytes).",
        type: "too_large");
}
