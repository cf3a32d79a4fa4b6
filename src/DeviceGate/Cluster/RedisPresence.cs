using System.Globalization;
using DeviceGate.Connections;
using DeviceGate.Protocol;
using StackExchange.Redis;
using DeviceGate.Sessions;

namespace DeviceGate.Cluster;

/// <summary>
/// Presence in Redis: one hash field per device (<c>node|epoch|connectedAt</c>), an epoch counter per device for
/// fencing, and a lease key per node. An entry counts only while its node's lease lives, so a node that dies
/// loses its devices within the lease.
/// </summary>
internal sealed class RedisPresence(IConnectionMultiplexer redis, RedisKeys keys, NodeIdentity node, IClusterBus bus, ILogger<RedisPresence> logger) : IPresence
{
    private IDatabase Db => redis.GetDatabase();

    private const string RegisterScript = """
        local epoch = redis.call('INCR', KEYS[2])
        local previous = redis.call('HGET', KEYS[1], ARGV[1])
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. epoch .. '|' .. ARGV[3])
        return {epoch, previous or ''}
        """;

    public async Task<long> RegisterAsync(DeviceSession connection)
    {
        var r = (RedisResult[])(await Db.ScriptEvaluateAsync(RegisterScript, [keys.Presence, keys.Epoch(connection.DeviceId)],
            [connection.DeviceId, node.Id, connection.ConnectedAt.ToUnixTimeMilliseconds() + "|" + connection.TransportName + "|" + connection.Protocol]).ConfigureAwait(false))!;
        var epoch = (long)r[0];
        if (Parse(connection.DeviceId, (string)r[1]!) is { } previous && previous.Node != node.Id)
        {
            // Another node held the device: it closes that connection (4000) and, fenced by the epoch, stops delivering.
            await bus.CloseAsync(previous.Node, connection.DeviceId, previous.Epoch, CloseCodes.Replaced, CloseReasons.Replaced).ConfigureAwait(false);
        }
        return epoch;
    }

    private const string UnregisterScript = """
        local current = redis.call('HGET', KEYS[1], ARGV[1])
        if current == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) return 1 end
        return 0
        """;

    public async Task UnregisterAsync(DeviceSession connection)
    {
        try
        {
            await Db.ScriptEvaluateAsync(UnregisterScript, [keys.Presence],
                [connection.DeviceId, $"{node.Id}|{connection.Epoch}|{connection.ConnectedAt.ToUnixTimeMilliseconds()}|{connection.TransportName}|{connection.Protocol}"]).ConfigureAwait(false);
        }
        catch (Exception e) when (Storage.StoreFailures.Is(e))
        {
            // Redis is away: the entry dies with this node's lease, or is overwritten by the next connect.
            Log.ClusterError(logger, "presence unregister", e.Message);
        }
    }

    public async Task<PresenceEntry?> LocateAsync(string device)
    {
        var entry = Parse(device, await Db.HashGetAsync(keys.Presence, device).ConfigureAwait(false));
        return entry is not null && await IsAliveAsync(entry.Node).ConfigureAwait(false) ? entry : null;
    }

    public async Task<IReadOnlyList<PresenceEntry>> ListAsync(string? after, int limit)
    {
        var all = new List<PresenceEntry>();
        await foreach (var e in Db.HashScanAsync(keys.Presence, pageSize: 1000).ConfigureAwait(false))
        {
            var device = (string)e.Name!;
            if (after is not null && string.CompareOrdinal(device, after) <= 0) continue;
            if (Parse(device, e.Value) is { } p) all.Add(p);
        }
        var alive = new Dictionary<string, bool>(StringComparer.Ordinal);
        foreach (var n in all.Select(p => p.Node).Distinct()) alive[n] = await IsAliveAsync(n).ConfigureAwait(false);
        return all.Where(p => alive[p.Node]).OrderBy(p => p.Device, StringComparer.Ordinal).Take(limit).ToList();
    }

    private Task<bool> IsAliveAsync(string nodeId) => nodeId == node.Id ? Task.FromResult(true) : Db.KeyExistsAsync(keys.NodeLease(nodeId));

    private static PresenceEntry? Parse(string device, RedisValue value)
    {
        if (value.IsNullOrEmpty) return null;
        var parts = ((string)value!).Split('|');
        // node|epoch|connectedAt, then transport|protocol (entries written before those existed have three parts).
        return parts.Length is 3 or 5
            ? new PresenceEntry(device, parts[0], long.Parse(parts[1], CultureInfo.InvariantCulture), DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(parts[2], CultureInfo.InvariantCulture)),
                parts.Length == 5 ? parts[3] : null, parts.Length == 5 ? parts[4] : null)
            : null;
    }
}
