namespace DeviceGate.Events;

/// <summary>
/// Who numbers events and keeps them beyond a node's replay ring. Implementations: <see cref="LocalEventLog"/> (a
/// single node numbers its own, above its start time, and keeps nothing beyond its ring) and
/// <c>Cluster.RedisEventLog</c> (a counter, a capped stream and a channel in Redis, one order for every node).
/// Contract: ids only grow; every reader of a node sees them in increasing order.
/// </summary>
internal interface IEventLog
{
    /// <summary>The id before this life's first event: a reader presenting one at or below it is from before (a reset).</summary>
    long Start { get; }

    /// <summary>
    /// Numbers a new event. A node-local log returns it numbered (after <paramref name="last"/>), for the hub to fan
    /// out at once under its lock; a shared log returns null and every node, this one too, receives it through
    /// <see cref="EventHub.Receive"/> in the log's order.
    /// </summary>
    GatewayEvent? Append(long last, Func<long, GatewayEvent> create);

    /// <summary>
    /// The events after <paramref name="seq"/> that the log keeps (oldest first, at most <paramref name="max"/>), so a
    /// reader can resume on any node; null when the log keeps none beyond this node's replay ring.
    /// </summary>
    Task<IReadOnlyList<GatewayEvent>?> ReadAfterAsync(long seq, int max);
}

/// <summary>
/// A single node's numbering. It keeps events in memory only, so after a restart its ids must not start over:
/// readers and webhook receivers dedupe and resume by id. This life's ids start above the start time in microseconds,
/// which no earlier life reached unless it averaged over a million events a second.
/// </summary>
internal sealed class LocalEventLog(TimeProvider time) : IEventLog
{
    public long Start { get; } = time.GetUtcNow().ToUnixTimeMilliseconds() * 1000;

    public GatewayEvent? Append(long last, Func<long, GatewayEvent> create) => create(last + 1);

    public Task<IReadOnlyList<GatewayEvent>?> ReadAfterAsync(long seq, int max) => Task.FromResult<IReadOnlyList<GatewayEvent>?>(null);
}
