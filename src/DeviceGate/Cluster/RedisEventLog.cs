using DeviceGate.Events;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace DeviceGate.Cluster;

/// <summary>
/// The cluster's event log: one script numbers an event (INCR), keeps it in a capped stream whose entry id is the
/// number (so replay is a range read) and publishes it, all atomically, so every node sees one order.
/// </summary>
internal sealed class RedisEventLog(IConnectionMultiplexer redis, RedisKeys keys, IOptions<GatewayOptions> options, ILogger<RedisEventLog> logger) : IEventLog
{
    /// <summary>Redis numbers from 0 and keeps counting across node restarts.</summary>
    public long Start => 0;

    /// <summary>Starts the append (its <c>"seq":0</c> is replaced by the number) and returns null: the event comes back on the channel.</summary>
    public GatewayEvent? Append(long last, Func<long, GatewayEvent> create)
    {
        _ = AppendAsync(create(0).Json);
        return null;
    }

    private const string AppendScript = """
        local seq = redis.call('INCR', KEYS[1])
        local json = string.gsub(ARGV[1], '"seq":0', '"seq":' .. seq, 1)
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-1', 'e', json)
        redis.call('SPUBLISH', ARGV[3], json)
        return seq
        """;

    private async Task AppendAsync(byte[] json)
    {
        try
        {
            await OneSlot.EvaluateAsync(redis.GetDatabase(), AppendScript,
                [keys.EventSequence, keys.EventStream], [json, options.Value.Events.ReplayBuffer, keys.EventsChannel.ToString()]).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Log.ClusterError(logger, "event append", e.Message);
        }
    }

    public async Task<IReadOnlyList<GatewayEvent>?> ReadAfterAsync(long seq, int max)
    {
        var entries = await redis.GetDatabase().StreamRangeAsync(keys.EventStream, $"{seq}-2", "+", max).ConfigureAwait(false);
        return entries.Select(e => GatewayEvent.FromJson((byte[])e["e"]!)).ToList();
    }
}
