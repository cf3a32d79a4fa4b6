using System.Buffers;
using System.IO.Pipelines;
using System.Net.WebSockets;
using System.Text.Unicode;
using DeviceGate.Connections;
using Microsoft.Net.Http.Headers;

namespace DeviceGate.Api;

/// <summary>Reads an API body into one message: octet-stream is binary, anything else must be UTF-8 text.</summary>
internal static class MessageBody
{
    public const string OctetStream = "application/octet-stream";

    /// <summary>The message, or a problem result (413 over the limit, 400 for text that is not UTF-8).</summary>
    public static async Task<(OutboundMessage Message, IResult? Problem)> ReadAsync(HttpRequest request, int maxBytes)
    {
        if (request.ContentLength > maxBytes) return (default, TooLarge(maxBytes));
        var reader = request.BodyReader;
        ReadResult read;
        while (true)
        {
            read = await reader.ReadAsync(request.HttpContext.RequestAborted).ConfigureAwait(false);
            if (read.Buffer.Length > maxBytes)
            {
                reader.AdvanceTo(read.Buffer.Start, read.Buffer.End);
                return (default, TooLarge(maxBytes));
            }
            if (read.IsCompleted) break;
            reader.AdvanceTo(read.Buffer.Start, read.Buffer.End);
        }
        var bytes = read.Buffer.ToArray();
        reader.AdvanceTo(read.Buffer.End);

        if (IsBinary(request.ContentType)) return (OutboundMessage.Binary(bytes), null);
        if (!Utf8.IsValid(bytes))
        {
            return (default, Results.Problem(statusCode: 400, title: "Body is not valid UTF-8",
                detail: "Send text as UTF-8, or binary with Content-Type: application/octet-stream.",
                type: "https://devicegate.dev/problems/invalid-utf8"));
        }
        return (OutboundMessage.Text(bytes), null);
    }

    public static bool IsBinary(string? contentType) =>
        contentType is not null
        && MediaTypeHeaderValue.TryParse(contentType, out var media)
        && media.MediaType.Equals(OctetStream, StringComparison.OrdinalIgnoreCase);

    public static WebSocketMessageType TypeOf(string? contentType) =>
        IsBinary(contentType) ? WebSocketMessageType.Binary : WebSocketMessageType.Text;

    private static IResult TooLarge(int maxBytes) => Results.Problem(statusCode: 413, title: "Message too large",
        detail: $"The body exceeds DeviceGate:Limits:MaxMessageBytes ({maxBytes} bytes).",
        type: "https://devicegate.dev/problems/too-large");
}
