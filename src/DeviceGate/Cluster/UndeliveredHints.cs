using System.Collections.Concurrent;
using StackExchange.Redis;

namespace DeviceGate.Cluster;

/// <summary>
/// A stored message whose hop to its device's node did not arrive (the node's channel had no subscriber, as during a
/// Redis failover while it subscribes again, or the publish failed) would wait for the device's next connection.
/// The sending node leaves a hint instead: the device id in the node's undelivered set
/// (<c>{prefix}undelivered:{node}</c>); that node drains its set every second and its device's lane catches up from
/// the store. A hint Redis cannot take now is kept here (at most 10,000) and written with the next drain.
/// </summary>
internal sealed class UndeliveredHints(IConnectionMultiplexer redis, RedisKeys keys, Sessions.IPresence presence, ILogger<UndeliveredHints> logger)
{
    private const int MaxKept = 10_000;
    // Node null: stored while Redis could not say where the device is; located again when the hint is written.
    private readonly ConcurrentQueue<(string? Node, string Device)> _kept = new();
    private int _keptCount;

    public async Task NoteAsync(string node, string device)
    {
        try
        {
            await redis.GetDatabase().SetAddAsync(keys.Undelivered(node), device).ConfigureAwait(false);
        }
        catch (Exception e) when (Storage.StoreFailures.Is(e))
        {
            Keep(node, device);
        }
    }

    /// <summary>A message for the device was stored, and then Redis could not say where the device is: it is located with the next flush.</summary>
    public void KeepUnlocated(string device) => Keep(null, device);

    private void Keep(string? node, string device)
    {
        if (Interlocked.Increment(ref _keptCount) > MaxKept)
        {
            // Past the bound the message still waits in the store for the device's next connection.
            Interlocked.Decrement(ref _keptCount);
            return;
        }
        _kept.Enqueue((node, device));
    }

    /// <summary>Writes the hints kept while Redis could not take them.</summary>
    public async Task FlushAsync()
    {
        var n = Volatile.Read(ref _keptCount);
        for (var i = 0; i < n && _kept.TryDequeue(out var hint); i++)
        {
            Interlocked.Decrement(ref _keptCount);
            var target = hint.Node;
            if (target is null)
            {
                try
                {
                    // Not connected anywhere: the message waits for the device's next connection, as any stored message.
                    if ((target = (await presence.LocateAsync(hint.Device).ConfigureAwait(false))?.Node) is null) continue;
                }
                catch (Exception e) when (Storage.StoreFailures.Is(e))
                {
                    Keep(null, hint.Device);
                    continue;
                }
            }
            await NoteAsync(target, hint.Device).ConfigureAwait(false);
        }
    }

    private const string TakeScript = "return redis.call('SPOP', KEYS[1], ARGV[1])";

    /// <summary>The devices other nodes could not reach on this node (each once), taken out of the set; null when Redis cannot say.</summary>
    public async Task<IReadOnlyList<string>?> TakeAsync(string node, int max)
    {
        try
        {
            // A script rather than SPOP with a count: StackExchange.Redis failed to read that reply (InternalFailure)
            // after a Redis Cluster failover, and a node that cannot drain its hints never catches up.
            var taken = (RedisResult[])(await OneSlot.EvaluateAsync(redis.GetDatabase(), TakeScript, [keys.Undelivered(node)], [max]).ConfigureAwait(false))!;
            return taken.Select(v => (string)v!).ToList();
        }
        catch (Exception e) when (Storage.StoreFailures.Is(e))
        {
            Log.ClusterError(logger, "undelivered hints", e.Message);
            return null;
        }
    }
}
