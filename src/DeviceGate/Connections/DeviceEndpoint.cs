using System.Net.WebSockets;
using DeviceGate.Auth;
using DeviceGate.Events;
using DeviceGate.Hosting;
using DeviceGate.Routing;
using DeviceGate.Rpc;
using DeviceGate.Protocol;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;

namespace DeviceGate.Connections;

/// <summary><c>GET /ws?deviceId=</c>: checks the handshake, upgrades, registers the device and runs it until it leaves.</summary>
internal sealed class DeviceEndpoint(
    Handshake handshake,
    ConnectionRegistry registry,
    DeviceDirectory directory,
    EnvelopeHandler envelopes,
    EventHub events,
    RpcCoordinator rpcs,
    Delivery.DeliveryService delivery,
    GatewayStats stats,
    ShutdownState shutdown,
    IOptions<GatewayOptions> options,
    TimeProvider time,
    ILogger<DeviceEndpoint> logger)
{
    public async Task HandleAsync(HttpContext context)
    {
        var remote = context.Connection.RemoteIpAddress?.ToString();
        if (shutdown.IsDraining)
        {
            await RefuseAsync(context, 503, "server is shutting down", null, remote).ConfigureAwait(false);
            return;
        }
        var outcome = await handshake.CheckDeviceAsync(context.Request).ConfigureAwait(false);
        if (!outcome.Accepted)
        {
            await RefuseAsync(context, outcome.Status, outcome.Reason, outcome.DeviceId, remote).ConfigureAwait(false);
            return;
        }
        if (!context.WebSockets.IsWebSocketRequest)
        {
            context.Response.Headers.Upgrade = "websocket";
            await RefuseAsync(context, 426, "not a WebSocket upgrade request", outcome.DeviceId, remote).ConfigureAwait(false);
            return;
        }

        // Registered before the 101 goes out: once a device sees its upgrade succeed, it can be reached.
        var deviceId = outcome.DeviceId!;
        var mode = context.WebSockets.WebSocketRequestedProtocols.Contains(Subprotocols.EnvelopeJson) ? ConnectionMode.Envelope : ConnectionMode.Raw;
        var connection = new DeviceConnection(deviceId, mode, DevicePermissions.From(outcome.Identity?.Token), options.Value.Limits, time,
            mode == ConnectionMode.Envelope ? envelopes.Handle : OnRawMessage);
        connection.Closing += rpcs.ConnectionGone;
        var lane = connection.Lane = delivery.CreateLane(connection);
        connection.Closing += _ => lane.Close();
        directory.Seen(deviceId, connection.ConnectedAt);
        if (registry.Register(connection) is { } replaced) Log.DeviceReplaced(logger, replaced.DeviceId);

        var ws = options.Value.WebSockets;
        WebSocket socket;
        try
        {
            socket = await context.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext
            {
                KeepAliveInterval = ws.KeepAliveInterval,
                KeepAliveTimeout = ws.KeepAliveTimeout,
                SubProtocol = mode == ConnectionMode.Envelope ? Subprotocols.EnvelopeJson : null,
            }).ConfigureAwait(false);
        }
        catch
        {
            connection.Abandon();
            registry.Unregister(connection);
            throw;
        }
        using var owned = socket;
        Log.DeviceConnected(logger, deviceId, remote);
        events.Connected(deviceId);
        _ = lane.StartAsync();

        using var expiry = ScheduleTokenExpiry(connection, outcome.Identity?.ExpiresAt);
        await connection.RunAsync(socket).ConfigureAwait(false);

        registry.Unregister(connection);
        directory.Seen(deviceId, time.GetUtcNow());
        Log.DeviceDisconnected(logger, deviceId, connection.CloseCode, connection.CloseReason, connection.ClosedByDevice ? "device" : "server");
        events.Disconnected(deviceId, connection.CloseCode, connection.CloseReason);
    }

    /// <summary>What a raw device sends goes to the event stream: text as <c>data</c>, binary as <c>dataBase64</c>.</summary>
    private void OnRawMessage(DeviceConnection connection, ReadOnlySpan<byte> payload, WebSocketMessageType type)
    {
        stats.MessageIn();
        Log.RawMessageReceived(logger, connection.DeviceId, type, payload.Length);
        var bytes = payload.ToArray();
        events.Message(connection.DeviceId, type == WebSocketMessageType.Text && System.Text.Unicode.Utf8.IsValid(bytes)
            ? MessageData.Text(bytes)
            : MessageData.Binary(bytes));
    }

    private ITimer? ScheduleTokenExpiry(DeviceConnection connection, DateTimeOffset? expiresAt)
    {
        if (expiresAt is not { } exp) return null;
        var due = exp - time.GetUtcNow();
        if (due < TimeSpan.Zero) due = TimeSpan.Zero;
        return time.CreateTimer(
            static state => ((DeviceConnection)state!).RequestClose(CloseCodes.PolicyViolation, CloseReasons.TokenExpired, dropBacklog: true),
            connection, due, Timeout.InfiniteTimeSpan);
    }

    private Task RefuseAsync(HttpContext context, int status, string reason, string? deviceId, string? remote)
    {
        Log.HandshakeRefused(logger, status, reason, deviceId, remote);
        if (status == 503) context.Response.Headers.RetryAfter = "5";
        return Results.Problem(statusCode: status, title: reason, type: "handshake_refused").ExecuteAsync(context);
    }
}
