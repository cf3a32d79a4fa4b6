using DeviceGate.Events;
using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace DeviceGate.Cluster;

/// <summary>
/// The cluster's event log: one script numbers an event (INCR), keeps it in a capped stream whose entry id is the
/// number (so replay is a range read) and publishes it, all atomically, so every node sees one order.
/// </summary>
internal sealed class RedisEventLog(IConnectionMultiplexer redis, RedisKeys keys, IOptions<GatewayOptions> options) : IEventLog
{
    private const string AppendScript = """
        local seq = redis.call('INCR', KEYS[1])
        local json = string.gsub(ARGV[1], '"seq":0', '"seq":' .. seq, 1)
        redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-1', 'e', json)
        redis.call('PUBLISH', ARGV[3], json)
        return seq
        """;

    public Task AppendAsync(byte[] json) => redis.GetDatabase().ScriptEvaluateAsync(AppendScript,
        [keys.EventSequence, keys.EventStream], [json, options.Value.Events.ReplayBuffer, keys.EventsChannel.ToString()]);

    public async Task<IReadOnlyList<GatewayEvent>> ReadAfterAsync(long seq, int max)
    {
        var entries = await redis.GetDatabase().StreamRangeAsync(keys.EventStream, $"{seq}-2", "+", max).ConfigureAwait(false);
        return entries.Select(e => GatewayEvent.FromJson((byte[])e["e"]!)).ToList();
    }
}
