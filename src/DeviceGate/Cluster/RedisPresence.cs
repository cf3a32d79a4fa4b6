using System.Globalization;
using DeviceGate.Connections;
using DeviceGate.Protocol;
using StackExchange.Redis;
using DeviceGate.Sessions;

namespace DeviceGate.Cluster;

/// <summary>
/// Presence in Redis. Per device, in its own hash slot: <c>presence:{device}</c> (<c>node|epoch|connectedAt|
/// transport|protocol</c>) and the epoch counter that fences takeovers. Per node: the sorted set of the devices it
/// holds (<c>node:{id}:devices</c>, lexicographic), for listings and counts that cost a few commands per node, never
/// a scan of every device. An entry counts only while its node's lease lives, so a node that dies loses its
/// devices within the lease; the per-device entry is the truth, the node sets are its index.
/// </summary>
internal sealed class RedisPresence(IConnectionMultiplexer redis, RedisKeys keys, NodeIdentity node, IClusterBus bus, Takeovers takeovers, ILogger<RedisPresence> logger) : IPresence
{
    private IDatabase Db => redis.GetDatabase();

    private const string RegisterScript = """
        local epoch = redis.call('INCR', KEYS[2])
        local previous = redis.call('GET', KEYS[1])
        redis.call('SET', KEYS[1], ARGV[1] .. '|' .. epoch .. '|' .. ARGV[2])
        return {epoch, previous or ''}
        """;

    public async Task<long> RegisterAsync(DeviceSession connection)
    {
        var device = connection.DeviceId;
        var db = Db;
        var index = db.SortedSetAddAsync(keys.NodeDevices(node.Id), device, 0);
        var r = (RedisResult[])(await OneSlot.EvaluateAsync(db, RegisterScript, [keys.DevicePresence(device), keys.Epoch(device)],
            [node.Id, connection.ConnectedAt.ToUnixTimeMilliseconds() + "|" + connection.TransportName + "|" + connection.Protocol]).ConfigureAwait(false))!;
        await index.ConfigureAwait(false);
        var epoch = (long)r[0];
        if (Parse(device, (string)r[1]!) is { } previous && previous.Node != node.Id)
        {
            // Another node held the device: it closes that connection (4000) and, fenced by the epoch, stops delivering;
            // this registration ends once it confirmed (bounded), so no send through it reaches the old connection after.
            await takeovers.CloseAndWaitAsync(device, previous.Epoch,
                () => bus.CloseAsync(previous.Node, device, previous.Epoch, CloseCodes.Replaced, CloseReasons.Replaced)).ConfigureAwait(false);
        }
        return epoch;
    }

    // Deletes the entry if it is still this connection's; returns what is there now ('' when nothing).
    private const string UnregisterScript = """
        local current = redis.call('GET', KEYS[1])
        if current == ARGV[1] then redis.call('DEL', KEYS[1]) return '' end
        return current or ''
        """;

    public async Task UnregisterAsync(DeviceSession connection)
    {
        var device = connection.DeviceId;
        try
        {
            var now = (string?)await OneSlot.EvaluateAsync(Db, UnregisterScript, [keys.DevicePresence(device)],
                [$"{node.Id}|{connection.Epoch}|{connection.ConnectedAt.ToUnixTimeMilliseconds()}|{connection.TransportName}|{connection.Protocol}"]).ConfigureAwait(false);
            // A newer connection of the device on this node keeps its place in this node's set.
            if (Parse(device, now)?.Node != node.Id) await Db.SortedSetRemoveAsync(keys.NodeDevices(node.Id), device).ConfigureAwait(false);
        }
        catch (Exception e) when (Storage.StoreFailures.Is(e))
        {
            // Redis is away: the entry dies with this node's lease, or is overwritten by the next connect.
            Log.ClusterError(logger, "presence unregister", e.Message);
        }
    }

    public async Task<PresenceEntry?> LocateAsync(string device)
    {
        var entry = Parse(device, await Db.StringGetAsync(keys.DevicePresence(device)).ConfigureAwait(false));
        return entry is not null && await IsAliveAsync(entry.Node).ConfigureAwait(false) ? entry : null;
    }

    /// <summary>
    /// Connected devices in id order after <paramref name="after"/>: each live node's set is read from the cursor
    /// (ZRANGEBYLEX, <paramref name="limit"/> at a time), the sets are merged, and every candidate is checked against
    /// its per-device entry (a device that just moved is listed once, under its node now). Cost: per page, two
    /// commands per live node plus one read per device listed.
    /// </summary>
    public async Task<IReadOnlyList<PresenceEntry>> ListAsync(string? after, int limit)
    {
        var db = Db;
        var nodes = await LiveNodesAsync().ConfigureAwait(false);
        var result = new List<PresenceEntry>();
        var cursor = after;
        var batch = Math.Clamp(limit, 16, 1000);
        while (result.Count < limit)
        {
            var reads = nodes.Select(n => db.SortedSetRangeByValueAsync(keys.NodeDevices(n), cursor is null ? default : (RedisValue)cursor, default,
                cursor is null ? Exclude.None : Exclude.Start, Order.Ascending, 0, batch)).ToArray();
            var pages = await Task.WhenAll(reads).ConfigureAwait(false);
            var candidates = pages.SelectMany(p => p.Select(v => (string)v!)).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
            if (candidates.Count == 0) break;
            // Only what every node's page covers is complete: beyond the smallest full page's last id, a node may hold more.
            var bound = pages.Where(p => p.Length == batch).Select(p => (string)p[^1]!).Order(StringComparer.Ordinal).FirstOrDefault();
            if (bound is not null) candidates = candidates.Where(d => string.CompareOrdinal(d, bound) <= 0).ToList();
            var entries = await Task.WhenAll(candidates.Select(d => db.StringGetAsync(keys.DevicePresence(d)))).ConfigureAwait(false);
            for (var i = 0; i < candidates.Count && result.Count < limit; i++)
            {
                if (Parse(candidates[i], entries[i]) is { } p && nodes.Contains(p.Node)) result.Add(p);
            }
            if (bound is null) break;
            cursor = bound;
        }
        return result;
    }

    /// <summary>How many devices the live nodes hold (each node's set size; a device moving between nodes may count twice for a moment).</summary>
    public async Task<long> CountAsync(bool othersOnly)
    {
        var db = Db;
        var nodes = (await LiveNodesAsync().ConfigureAwait(false)).Where(n => !othersOnly || n != node.Id);
        var counts = await Task.WhenAll(nodes.Select(n => db.SortedSetLengthAsync(keys.NodeDevices(n)))).ConfigureAwait(false);
        return counts.Sum();
    }

    /// <summary>Nodes with a live lease (this one always).</summary>
    private async Task<HashSet<string>> LiveNodesAsync()
    {
        var db = Db;
        var known = (await db.SetMembersAsync(keys.Nodes).ConfigureAwait(false)).Select(v => (string)v!).Where(n => n != node.Id).ToList();
        var alive = await Task.WhenAll(known.Select(n => db.KeyExistsAsync(keys.NodeLease(n)))).ConfigureAwait(false);
        var live = new HashSet<string>(StringComparer.Ordinal) { node.Id };
        for (var i = 0; i < known.Count; i++)
        {
            if (alive[i]) live.Add(known[i]);
        }
        return live;
    }

    private Task<bool> IsAliveAsync(string nodeId) => nodeId == node.Id ? Task.FromResult(true) : Db.KeyExistsAsync(keys.NodeLease(nodeId));

    private static PresenceEntry? Parse(string device, RedisValue value)
    {
        if (value.IsNullOrEmpty) return null;
        var parts = ((string)value!).Split('|');
        // node|epoch|connectedAt|transport|protocol
        return parts.Length == 5
            ? new PresenceEntry(device, parts[0], long.Parse(parts[1], CultureInfo.InvariantCulture), DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(parts[2], CultureInfo.InvariantCulture)),
                parts[3], parts[4])
            : null;
    }
}
