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
    public async Task HandleAsync(DeviceUpgrade upgrade)
    {
        if (shutdown.IsDraining)
        {
            await Refuse(upgrade, 503, "draining", "server is shutting down", 5);
            return;
        }
        if (handshake.CheckOrigin(upgrade) is { } refused)
        {
            await Refuse(upgrade, 403, "origin", refused, null);
            return;
        }
        if (Handshake.UpgradeProblem(upgrade) is { } problem)
        {
            await Refuse(upgrade, problem.Status, problem.Code, problem.Reason, null);
            return;
        }
        var remote = upgrade.RemoteIp;
        if (admission.TryAdmit(remote) is { } refusal)
        {
            await Refuse(upgrade, refusal.Status, refusal.Code, refusal.Reason, refusal.RetryAfterSeconds);
            return;
        }
        try
        {
            using var socket = await upgrade.AcceptAsync(null, options.Value.WebSockets).ConfigureAwait(false);
            metrics.Upgrades.Add(upgrade.Via);
            // An echo session is nobody's device: never registered, no lane, a budget of its own.
            var session = new DeviceSession("echo", Protocol.ConnectionMode.Raw, Auth.DevicePermissions.Unrestricted, budgets.Unshared(), time.GetUtcNow());
            // Paced by its own replies rather than the device message rate (DeviceSocket.HeldToRate).
            var transport = new DeviceSocket(session, options.Value.Limits, time, metrics, Echo) { HeldToRate = false };
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

    private Task Refuse(DeviceUpgrade upgrade, int status, string code, string reason, int? retryAfter)
    {
        metrics.HandshakesRefused.Add(code);
        // The echo endpoint's problem bodies never carried a reason; its refusals are counted by it all the same.
        return upgrade.RefuseAsync(status, null, reason, retryAfter);
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
