using System.Text.Json;
using System.Text.Json.Serialization;
using StackExchange.Redis;

namespace DeviceGate.Cluster;

/// <summary>Each node's counters in one Redis hash (written by each node with its lease), for cluster-wide /api/stats.</summary>
internal sealed class ClusterStats(IConnectionMultiplexer redis, RedisKeys keys, NodeIdentity node, GatewayMetrics metrics, TimeProvider time) : IOtherNodes
{
    public Task PublishAsync() => redis.GetDatabase().HashSetAsync(keys.Stats, node.Id,
        JsonSerializer.Serialize(NodeStats.Local(metrics, node, time), ClusterJsonContext.Default.NodeStats));

    /// <summary>The other live nodes' last published counters.</summary>
    public async Task<IReadOnlyList<NodeStats>> StatsAsync()
    {
        var db = redis.GetDatabase();
        var list = new List<NodeStats>();
        foreach (var e in await db.HashGetAllAsync(keys.Stats).ConfigureAwait(false))
        {
            if ((string)e.Name! == node.Id || !await db.KeyExistsAsync(keys.NodeLease(e.Name!)).ConfigureAwait(false)) continue;
            if (JsonSerializer.Deserialize((string)e.Value!, ClusterJsonContext.Default.NodeStats) is { } s) list.Add(s);
        }
        return list;
    }
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(NodeStats))]
internal sealed partial class ClusterJsonContext : JsonSerializerContext;
