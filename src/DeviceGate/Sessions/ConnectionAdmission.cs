using System.Collections.Concurrent;
using System.Net;
using System.Threading.RateLimiting;
using Microsoft.Extensions.Options;

namespace DeviceGate.Sessions;

/// <summary>
/// Who may open a connection right now: a global cap, a per-address cap and a token bucket on the connect rate
/// (a reconnect storm is spread out instead of melting the node). A ticket must be released when the connection ends.
/// </summary>
internal sealed class ConnectionAdmission : IDisposable
{
    private readonly LimitsOptions _limits;
    private readonly TokenBucketRateLimiter _connects;
    private readonly ConcurrentDictionary<IPAddress, int> _perIp = new();
    private int _open;

    public ConnectionAdmission(IOptions<GatewayOptions> options)
    {
        _limits = options.Value.Limits;
        _connects = new TokenBucketRateLimiter(new TokenBucketRateLimiterOptions
        {
            TokenLimit = _limits.ConnectsBurst,
            TokensPerPeriod = Math.Max(1, _limits.ConnectsPerSecond / 10),
            ReplenishmentPeriod = TimeSpan.FromMilliseconds(100),
            QueueLimit = 0,
            AutoReplenishment = true,
        });
    }

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
        using var lease = _connects.AttemptAcquire();
        if (!lease.IsAcquired)
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

    public void Dispose() => _connects.Dispose();
}
