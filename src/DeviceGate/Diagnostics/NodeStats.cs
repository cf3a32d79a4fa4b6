namespace DeviceGate.Diagnostics;

/// <summary>One node's counters, as <c>GET /api/stats</c> reports them and as each node publishes them in a cluster.</summary>
public sealed record NodeStats(string Node, long ConnectedDevices, long MessagesIn, long MessagesOut, long HandshakesRefused, long OutboxDepth, DateTimeOffset At)
{
    internal static NodeStats Local(GatewayMetrics m, NodeIdentity node, TimeProvider time) => new(
        node.Id,
        (long)m.Value(m.ConnectedDevices),
        (long)m.Sum(m.MessagesReceived),
        (long)m.Sum(m.MessagesDelivered),
        (long)m.Sum(m.HandshakesRefused),
        m.OutboxDepth,
        time.GetUtcNow());
}

/// <summary>The other nodes' counters: none on a single node; a cluster reads what each live node published.</summary>
internal interface IOtherNodes
{
    Task<IReadOnlyList<NodeStats>> StatsAsync();
}

internal sealed class NoOtherNodes : IOtherNodes
{
    public Task<IReadOnlyList<NodeStats>> StatsAsync() => Task.FromResult<IReadOnlyList<NodeStats>>([]);
}
