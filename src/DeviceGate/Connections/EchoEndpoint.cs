using System.Net.WebSockets;
using Microsoft.Extensions.Options;
using DeviceGate.Sessions;

namespace DeviceGate.Connections;

/// <summary><c>GET /ws/echo</c>: phase 1. Every message comes back with its type; same admission, limits and close codes as devices.</summary>
internal sealed class EchoEndpoint(
    Handshake handshake,
    ConnectionAdmission admission,
    ShutdownState shutdown,
    EchoConnections echoes,
    DeviceBudgets budgets,
    IOptions<GatewayOptions> options,
    GatewayMetrics metrics,
    TimeProvider time)
{
    public async Task HandleAsync(HttpContext context)
    {
        if (shutdown.IsDraining)
        {
            context.Response.Headers.RetryAfter = "5";
            await Refuse(context, 503, "draining", "server is shutting down");
            return;
        }
        if (handshake.CheckOrigin(context.Request) is { } refused)
        {
            await Refuse(context, 403, "origin", refused);
            return;
        }
        if (Handshake.UpgradeProblem(context) is { } problem)
        {
            Handshake.AddRefusalHeaders(context.Response, problem.Status);
            await Refuse(context, problem.Status, problem.Code, problem.Reason);
            return;
        }
        var remote = context.Connection.RemoteIpAddress;
        if (admission.TryAdmit(remote) is { } refusal)
        {
            context.Response.Headers.RetryAfter = refusal.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await Refuse(context, refusal.Status, refusal.Code, refusal.Reason);
            return;
        }
        try
        {
            using var socket = await context.WebSockets.AcceptWebSocketAsync(DeviceEndpoint.AcceptContext(options.Value.WebSockets, null)).ConfigureAwait(false);
            // An echo session is nobody's device: never registered, no lane, a budget of its own.
            var session = new DeviceSession("echo", Protocol.ConnectionMode.Raw, Auth.DevicePermissions.Unrestricted, budgets.Unshared(), time.GetUtcNow());
            var transport = new DeviceSocket(session, options.Value.Limits, time, metrics, Echo);
            session.Attach(transport, lane: null);
            echoes.Add(session);
            try
            {
                await transport.RunAsync(socket).ConfigureAwait(false);
            }
            finally
            {
                echoes.Remove(session);
            }
        }
        finally
        {
            admission.Release(remote);
        }
    }

    private Task Refuse(HttpContext context, int status, string code, string reason)
    {
        metrics.HandshakesRefused.Add(code);
        return Results.Problem(statusCode: status, title: reason, type: "handshake_refused").ExecuteAsync(context);
    }

    private static void Echo(DeviceSession connection, ReadOnlySpan<byte> payload, WebSocketMessageType type) =>
        connection.TryEnqueue(new OutboundMessage(payload.ToArray(), type));
}

/// <summary>Live echo connections, so shutdown can close them too.</summary>
internal sealed class EchoConnections
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<DeviceSession, byte> _all = new();
    public void Add(DeviceSession c) => _all.TryAdd(c, 0);
    public void Remove(DeviceSession c) => _all.TryRemove(c, out _);
    public ICollection<DeviceSession> All => _all.Keys;
}
