using System.Net.WebSockets;
using System.Text;

namespace DeviceGate.Tests.Infrastructure;

public sealed record Received(WebSocketMessageType Type, byte[] Data)
{
    public string Text => Encoding.UTF8.GetString(Data);
}

public static class WebSocketExtensions
{
    /// <summary>The next whole message, or a Close record once the server closed; bounded by <paramref name="timeout"/>.</summary>
    public static async Task<Received> ReceiveMessageAsync(this WebSocket socket, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? Timeouts.Default);
        var buffer = new byte[8192];
        using var message = new MemoryStream();
        while (true)
        {
            var r = await socket.ReceiveAsync(buffer, cts.Token);
            if (r.MessageType == WebSocketMessageType.Close) return new Received(WebSocketMessageType.Close, []);
            message.Write(buffer, 0, r.Count);
            if (r.EndOfMessage) return new Received(r.MessageType, message.ToArray());
        }
    }

    public static async Task<string> ReceiveTextAsync(this WebSocket socket, TimeSpan? timeout = null)
    {
        var m = await socket.ReceiveMessageAsync(timeout);
        Assert.Equal(WebSocketMessageType.Text, m.Type);
        return m.Text;
    }

    /// <summary>
    /// Reads until the server's close frame, adding each message's text to <paramref name="received"/> (under its
    /// lock, so the test may look at it meanwhile); each message bounded like <see cref="ReceiveMessageAsync"/>.
    /// </summary>
    public static async Task<(int Code, string? Reason)> ReceiveUntilCloseAsync(this WebSocket socket, List<string> received)
    {
        while (true)
        {
            var m = await socket.ReceiveMessageAsync();
            if (m.Type == WebSocketMessageType.Close) return ((int)socket.CloseStatus!, socket.CloseStatusDescription);
            lock (received) received.Add(m.Text);
        }
    }

    /// <summary>Reads (and drops) messages until the server's close frame; returns its code and reason.</summary>
    public static async Task<(int Code, string? Reason)> ReceiveCloseAsync(this WebSocket socket, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? Timeouts.Default);
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var r = await socket.ReceiveAsync(buffer, cts.Token);
            if (r.MessageType == WebSocketMessageType.Close) return ((int)r.CloseStatus!.Value, r.CloseStatusDescription);
        }
    }

    public static Task SendTextAsync(this WebSocket socket, string text) =>
        socket.SendAsync(Encoding.UTF8.GetBytes(text), WebSocketMessageType.Text, true, new CancellationTokenSource(Timeouts.Default).Token);

    /// <summary>Closes from the client side and waits (bounded) for the server's answer.</summary>
    public static async Task CloseCleanlyAsync(this WebSocket socket)
    {
        using var cts = new CancellationTokenSource(Timeouts.Default);
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "bye", cts.Token);
    }
}
