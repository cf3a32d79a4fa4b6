namespace DeviceGate.Diagnostics;

/// <summary>One node's counters, as <c>GET /api/stats</c> reports them and as each node publishes them in a cluster.</summary>
public sealed record NodeStats(string Node, long ConnectedDevices, long MessagesIn, long MessagesOut, long HandshakesRefused, long OutboxDepth, DateTimeOffset At)
{
    internal static NodeStats Local(GatewayMetrics m, NodeIdentity node, TimeProvider time) => new(
        node.Id,
        (long)m.ConnectedDevices.Value,
        (long)(m.MessagesReceived.WithLabels("raw").Value + m.MessagesReceived.WithLabels("envelope").Value),
        (long)new[] { MessageKinds.Targeted, MessageKinds.Group, MessageKinds.Broadcast, MessageKinds.Rpc }.Sum(k => m.MessagesDelivered.WithLabels(k).Value),
        (long)m.HandshakesRefused.GetAllLabelValues().Sum(l => m.HandshakesRefused.WithLabels(l).Value),
        (long)m.OutboxDepth.Value,
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
