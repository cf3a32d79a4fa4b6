using System.Net.WebSockets;
using DeviceGate.Auth;
using DeviceGate.Events;
using DeviceGate.Hosting;
using DeviceGate.Protocol;
using DeviceGate.Routing;
using DeviceGate.Rpc;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;

namespace DeviceGate.Connections;

/// <summary><c>GET /ws?deviceId=</c>: admits, checks the handshake, upgrades, registers the device and runs it until it leaves.</summary>
internal sealed class DeviceEndpoint(
    Handshake handshake,
    ConnectionAdmission admission,
    ConnectionRegistry registry,
    DeviceDirectory directory,
    EnvelopeHandler envelopes,
    EventHub events,
    RpcCoordinator rpcs,
    Delivery.DeliveryService delivery,
    Cluster.IPresence presence,
    GatewayMetrics metrics,
    ShutdownState shutdown,
    IOptions<GatewayOptions> options,
    TimeProvider time,
    ILogger<DeviceEndpoint> logger)
{
    // Created once, shared by every connection (a method group or lambda per connection would allocate per device).
    private DeviceConnection.MessageHandler? _onEnvelopeField, _onRawField;
    private Action<DeviceConnection>? _onEnvelopeRateLimitedField, _onRawRateLimitedField, _onClosingField;
    private DeviceConnection.MessageHandler _onEnvelope => _onEnvelopeField ??= envelopes.Handle;
    private DeviceConnection.MessageHandler _onRaw => _onRawField ??= OnRawMessage;
    private Action<DeviceConnection> _onEnvelopeRateLimited => _onEnvelopeRateLimitedField ??= envelopes.RateLimited;
    private Action<DeviceConnection> _onRawRateLimited => _onRawRateLimitedField ??= OnRawRateLimited;
    private Action<DeviceConnection> _onClosing => _onClosingField ??= OnClosing;

    /// <summary>The close of a connection has started: pending rpcs fail, its lane stops, and presence forgets it.</summary>
    private void OnClosing(DeviceConnection connection)
    {
        rpcs.ConnectionGone(connection);
        connection.Lane?.Close();
        // Leave presence as soon as the close starts, not after the handshake: other nodes stop routing here at once.
        _ = presence.UnregisterAsync(connection);
        registry.Unregister(connection);
    }

    public async Task HandleAsync(HttpContext context)
    {
        var remote = context.Connection.RemoteIpAddress;
        if (shutdown.IsDraining)
        {
            await RefuseAsync(context, 503, "draining", "server is shutting down", null, 5).ConfigureAwait(false);
            return;
        }
        if (admission.TryAdmit(remote) is { } refusal)
        {
            await RefuseAsync(context, refusal.Status, refusal.Code, refusal.Reason, null, refusal.RetryAfterSeconds).ConfigureAwait(false);
            return;
        }
        try
        {
            await AdmittedAsync(context).ConfigureAwait(false);
        }
        finally
        {
            admission.Release(remote);
        }
    }

    private async Task AdmittedAsync(HttpContext context)
    {
        var outcome = await handshake.CheckDeviceAsync(context.Request).ConfigureAwait(false);
        if (!outcome.Accepted)
        {
            await RefuseAsync(context, outcome.Status, outcome.Code, outcome.Reason, outcome.DeviceId, null).ConfigureAwait(false);
            return;
        }
        if (!context.WebSockets.IsWebSocketRequest)
        {
            context.Response.Headers.Upgrade = "websocket";
            await RefuseAsync(context, 426, "not_upgrade", "not a WebSocket upgrade request", outcome.DeviceId, null).ConfigureAwait(false);
            return;
        }

        // Registered before the 101 goes out: once a device sees its upgrade succeed, it can be reached.
        var deviceId = outcome.DeviceId!;
        var permissions = DevicePermissions.From(outcome.Identity?.Token);
        var expiresAt = outcome.Identity?.ExpiresAt;
        // This method's state lives as long as the connection: keep the parsed token (and its claim dictionaries) out of it.
        outcome = default;
        var mode = context.WebSockets.WebSocketRequestedProtocols.Contains(Subprotocols.EnvelopeJson) ? ConnectionMode.Envelope : ConnectionMode.Raw;
        var envelope = mode == ConnectionMode.Envelope;
        var connection = new DeviceConnection(deviceId, mode, permissions, options.Value.Limits, time, metrics, envelope ? _onEnvelope : _onRaw)
        {
            RateLimited = envelope ? _onEnvelopeRateLimited : _onRawRateLimited,
            Closing = _onClosing,
        };
        var lane = connection.Lane = delivery.CreateLane(connection);
        directory.Seen(deviceId, connection.ConnectedAt);
        if (registry.Register(connection) is { } replaced) Log.DeviceReplaced(logger, replaced.DeviceId);

        WebSocket socket;
        try
        {
            // Presence (and, in a cluster, the close of an older connection on another node) before the 101.
            connection.Epoch = await presence.RegisterAsync(connection).ConfigureAwait(false);
            socket = await context.WebSockets.AcceptWebSocketAsync(AcceptContext(options.Value.WebSockets,
                mode == ConnectionMode.Envelope ? Subprotocols.EnvelopeJson : null)).ConfigureAwait(false);
        }
        catch
        {
            connection.Abandon();
            registry.Unregister(connection);
            throw;
        }
        using var owned = socket;
        Log.DeviceConnected(logger, deviceId, context.Connection.RemoteIpAddress?.ToString());
        metrics.ConnectionsOpened.Inc();
        metrics.ConnectedDevices.Inc();
        events.Connected(deviceId);
        _ = lane.StartAsync();

        using var expiry = ScheduleTokenExpiry(connection, expiresAt);
        await connection.RunAsync(socket).ConfigureAwait(false);

        registry.Unregister(connection);
        await presence.UnregisterAsync(connection).ConfigureAwait(false);
        metrics.ConnectedDevices.Dec();
        metrics.ConnectionsClosed.WithLabels(connection.CloseCode.ToString(System.Globalization.CultureInfo.InvariantCulture)).Inc();
        directory.Seen(deviceId, time.GetUtcNow());
        Log.DeviceDisconnected(logger, deviceId, connection.CloseCode, connection.CloseReason, connection.ClosedByDevice ? "device" : "server");
        events.Disconnected(deviceId, connection.CloseCode, connection.CloseReason);
    }

    internal static WebSocketAcceptContext AcceptContext(WebSocketsOptions ws, string? subprotocol) => new()
    {
        KeepAliveInterval = ws.KeepAliveInterval,
        KeepAliveTimeout = ws.KeepAliveTimeout,
        SubProtocol = subprotocol,
        // permessage-deflate only when configured; the read loop limits the decompressed size like the wire size.
        DangerousEnableCompression = ws.EnableCompression,
    };

    /// <summary>What a raw device sends goes to the event stream: text as <c>data</c>, binary as <c>dataBase64</c>.</summary>
    private void OnRawMessage(DeviceConnection connection, ReadOnlySpan<byte> payload, WebSocketMessageType type)
    {
        metrics.MessagesReceived.WithLabels("raw").Inc();
        Log.RawMessageReceived(logger, connection.DeviceId, type, payload.Length);
        var bytes = payload.ToArray();
        events.Message(connection.DeviceId, type == WebSocketMessageType.Text && System.Text.Unicode.Utf8.IsValid(bytes)
            ? MessageData.Text(bytes)
            : MessageData.Binary(bytes));
    }

    private void OnRawRateLimited(DeviceConnection connection) => Log.RateLimited(logger, connection.DeviceId);

    private ITimer? ScheduleTokenExpiry(DeviceConnection connection, DateTimeOffset? expiresAt)
    {
        if (expiresAt is not { } exp) return null;
        var due = exp - time.GetUtcNow();
        if (due < TimeSpan.Zero) due = TimeSpan.Zero;
        return time.CreateTimer(
            static state => ((DeviceConnection)state!).RequestClose(CloseCodes.PolicyViolation, CloseReasons.TokenExpired, dropBacklog: true),
            connection, due, Timeout.InfiniteTimeSpan);
    }

    private Task RefuseAsync(HttpContext context, int status, string code, string reason, string? deviceId, int? retryAfter)
    {
        metrics.HandshakesRefused.WithLabels(code).Inc();
        Log.HandshakeRefused(logger, status, reason, deviceId, context.Connection.RemoteIpAddress?.ToString());
        if (retryAfter is { } seconds) context.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return Results.Problem(statusCode: status, title: reason, type: "handshake_refused", extensions: new Dictionary<string, object?> { ["reason"] = code })
            .ExecuteAsync(context);
    }
}
