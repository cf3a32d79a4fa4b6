using System.Net.WebSockets;
using DeviceGate.Hosting;
using Microsoft.Extensions.Options;

namespace DeviceGate.Connections;

/// <summary><c>GET /ws/echo</c>: phase 1. Every message comes back with its type; same limits and close codes as devices.</summary>
internal sealed class EchoEndpoint(Handshake handshake, ShutdownState shutdown, EchoConnections echoes, IOptions<GatewayOptions> options, TimeProvider time)
{
    public async Task HandleAsync(HttpContext context)
    {
        if (shutdown.IsDraining)
        {
            context.Response.Headers.RetryAfter = "5";
            await Results.Problem(statusCode: 503, title: "server is shutting down").ExecuteAsync(context).ConfigureAwait(false);
            return;
        }
        if (handshake.CheckOrigin(context.Request) is { } refused)
        {
            await Results.Problem(statusCode: 403, title: refused).ExecuteAsync(context).ConfigureAwait(false);
            return;
        }
        if (!context.WebSockets.IsWebSocketRequest)
        {
            context.Response.Headers.Upgrade = "websocket";
            await Results.Problem(statusCode: 426, title: "not a WebSocket upgrade request").ExecuteAsync(context).ConfigureAwait(false);
            return;
        }
        var ws = options.Value.WebSockets;
        using var socket = await context.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext
        {
            KeepAliveInterval = ws.KeepAliveInterval,
            KeepAliveTimeout = ws.KeepAliveTimeout,
        }).ConfigureAwait(false);
        var connection = new DeviceConnection("echo", Protocol.ConnectionMode.Raw, Auth.DevicePermissions.Unrestricted, options.Value.Limits, time, Echo);
        echoes.Add(connection);
        try
        {
            await connection.RunAsync(socket).ConfigureAwait(false);
        }
        finally
        {
            echoes.Remove(connection);
        }
    }

    private static void Echo(DeviceConnection connection, ReadOnlySpan<byte> payload, WebSocketMessageType type) =>
        connection.TryEnqueue(new OutboundMessage(payload.ToArray(), type));
}

/// <summary>Live echo connections, so shutdown can close them too.</summary>
internal sealed class EchoConnections
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<DeviceConnection, byte> _all = new();
    public void Add(DeviceConnection c) => _all.TryAdd(c, 0);
    public void Remove(DeviceConnection c) => _all.TryRemove(c, out _);
    public ICollection<DeviceConnection> All => _all.Keys;
}
