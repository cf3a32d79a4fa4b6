// The baseline server of the load tool (bench/README.md): the same routes as DeviceGate on bare ASP.NET Core
// WebSockets, a ConcurrentDictionary, no auth, no queues, no metrics. Its shape is fixed so the ratios mean something:
// - each device's read loop receives into its own 1 KiB buffer;
// - each device has a SemaphoreSlim(1) around SendAsync;
// - a targeted send awaits that device's send, then answers 202;
// - a broadcast starts every device's send, awaits them all (Task.WhenAll), then answers 200.
using System.Collections.Concurrent;
using System.Net.WebSockets;

var builder = WebApplication.CreateSlimBuilder(args);
builder.Logging.SetMinimumLevel(LogLevel.Warning).AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Information);
var app = builder.Build();
app.UseWebSockets();

var devices = new ConcurrentDictionary<string, Device>(StringComparer.Ordinal);

app.Map("/ws", async (HttpContext context, string? deviceId) =>
{
    if (string.IsNullOrEmpty(deviceId)) return Results.BadRequest();
    if (!context.WebSockets.IsWebSocketRequest) return Results.StatusCode(426);
    using var socket = await context.WebSockets.AcceptWebSocketAsync();
    var device = new Device(socket);
    devices[deviceId] = device;
    var buffer = new byte[1024];
    try
    {
        while (true)
        {
            var r = await socket.ReceiveAsync(buffer, context.RequestAborted);
            if (r.MessageType == WebSocketMessageType.Close)
            {
                await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                break;
            }
        }
    }
    catch (Exception e) when (e is WebSocketException or OperationCanceledException)
    {
    }
    finally
    {
        devices.TryRemove(new KeyValuePair<string, Device>(deviceId, device));
    }
    return Results.Empty;
});

app.Map("/ws/echo", async (HttpContext context) =>
{
    if (!context.WebSockets.IsWebSocketRequest) return Results.StatusCode(426);
    using var socket = await context.WebSockets.AcceptWebSocketAsync();
    var buffer = new byte[1024];
    try
    {
        while (true)
        {
            var r = await socket.ReceiveAsync(buffer, context.RequestAborted);
            if (r.MessageType == WebSocketMessageType.Close)
            {
                await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, CancellationToken.None);
                break;
            }
            await socket.SendAsync(buffer.AsMemory(0, r.Count), r.MessageType, r.EndOfMessage, context.RequestAborted);
        }
    }
    catch (Exception e) when (e is WebSocketException or OperationCanceledException)
    {
    }
    return Results.Empty;
});

app.MapPost("/api/devices/{id}/messages", async (string id, HttpRequest request) =>
{
    if (!devices.TryGetValue(id, out var device)) return Results.NotFound();
    var (payload, type) = await ReadAsync(request);
    await device.SendAsync(payload, type);
    return Results.Accepted();
});

app.MapPost("/api/broadcast", async (HttpRequest request) =>
{
    var (payload, type) = await ReadAsync(request);
    var sends = devices.Values.Select(d => d.SendAsync(payload, type)).ToArray();
    await Task.WhenAll(sends);
    return Results.Ok(new { recipients = sends.Length });
});

app.Run();

static async Task<(byte[] Payload, WebSocketMessageType Type)> ReadAsync(HttpRequest request)
{
    using var body = new MemoryStream();
    await request.Body.CopyToAsync(body);
    var binary = request.ContentType?.StartsWith("application/octet-stream", StringComparison.OrdinalIgnoreCase) == true;
    return (body.ToArray(), binary ? WebSocketMessageType.Binary : WebSocketMessageType.Text);
}

internal sealed class Device(WebSocket socket)
{
    private readonly SemaphoreSlim _send = new(1, 1);

    public async Task SendAsync(byte[] payload, WebSocketMessageType type)
    {
        await _send.WaitAsync();
        try
        {
            await socket.SendAsync(payload, type, true, CancellationToken.None);
        }
        catch (Exception e) when (e is WebSocketException or ObjectDisposedException or IOException)
        {
        }
        finally
        {
            _send.Release();
        }
    }
}
