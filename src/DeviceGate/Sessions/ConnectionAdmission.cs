using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.Options;

namespace DeviceGate.Sessions;

/// <summary>
/// Who may open a connection right now: a global cap, a per-address cap and a token bucket on the connect rate
/// (a reconnect storm is spread out instead of melting the node). A ticket must be released when the connection ends.
/// </summary>
internal sealed class ConnectionAdmission(IOptions<GatewayOptions> options, TimeProvider time)
{
    private readonly LimitsOptions _limits = options.Value.Limits;
    private readonly Lock _gate = new();
    private TokenBucket _connects = new(options.Value.Limits.ConnectsPerSecond, options.Value.Limits.ConnectsBurst);
    private readonly ConcurrentDictionary<IPAddress, int> _perIp = new();
    private int _open;

    public readonly record struct Refusal(int Status, string Code, string Reason, int RetryAfterSeconds);

    /// <summary>Null when admitted (then call <see cref="Release"/> once), otherwise why not.</summary>
    public Refusal? TryAdmit(IPAddress? address)
    {
        if (Interlocked.Increment(ref _open) > _limits.MaxConnections)
        {
            Interlocked.Decrement(ref _open);
            return new Refusal(503, "capacity", $"this node holds its maximum of {_limits.MaxConnections} connections", 5);
        }
        if (_limits.MaxConnectionsPerIp > 0 && address is not null
            && _perIp.AddOrUpdate(address, 1, static (_, n) => n + 1) > _limits.MaxConnectionsPerIp)
        {
            ReleaseIp(address);
            Interlocked.Decrement(ref _open);
            return new Refusal(429, "per_ip", $"too many connections from this address (limit {_limits.MaxConnectionsPerIp})", 5);
        }
        bool admitted;
        lock (_gate) admitted = _connects.TryTake(time.GetTimestamp(), time);
        if (!admitted)
        {
            Release(address);
            return new Refusal(503, "connect_rate", "too many new connections per second; retry shortly", 1);
        }
        return null;
    }

    public void Release(IPAddress? address)
    {
        Interlocked.Decrement(ref _open);
        if (_limits.MaxConnectionsPerIp > 0 && address is not null) ReleaseIp(address);
    }

    private void ReleaseIp(IPAddress address)
    {
        while (_perIp.TryGetValue(address, out var n))
        {
            if (n <= 1 ? _perIp.TryRemove(new KeyValuePair<IPAddress, int>(address, n)) : _perIp.TryUpdate(address, n - 1, n)) return;
        }
    }
}
