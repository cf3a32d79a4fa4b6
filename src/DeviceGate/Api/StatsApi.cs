using System.Text.Json;
using DeviceGate.Hosting;

namespace DeviceGate.Api;

/// <summary><c>GET /api/stats</c>: the counters the dashboard charts, per node (every node's in a cluster).</summary>
internal static class StatsApi
{
    public static void Map(RouteGroupBuilder api) =>
        api.MapGet("/stats", GetAsync).WithName("Stats").Produces<StatsResponse>(200);

    public static NodeStats Local(GatewayMetrics m, NodeIdentity node, TimeProvider time) => new(
        node.Id,
        (long)m.ConnectedDevices.Value,
        (long)(m.MessagesReceived.WithLabels("raw").Value + m.MessagesReceived.WithLabels("envelope").Value),
        (long)new[] { MessageKinds.Targeted, MessageKinds.Group, MessageKinds.Broadcast, MessageKinds.Rpc }.Sum(k => m.MessagesDelivered.WithLabels(k).Value),
        (long)m.HandshakesRefused.GetAllLabelValues().Sum(l => m.HandshakesRefused.WithLabels(l).Value),
        (long)m.OutboxDepth.Value,
        time.GetUtcNow());

    private static async Task<IResult> GetAsync(GatewayMetrics metrics, NodeIdentity node, TimeProvider time, IServiceProvider services)
    {
        var nodes = new List<NodeStats> { Local(metrics, node, time) };
        if (services.GetService<Cluster.ClusterStats>() is { } cluster) nodes.AddRange(await cluster.OthersAsync().ConfigureAwait(false));
        return TypedResults.Json(new StatsResponse(nodes.OrderBy(n => n.Node, StringComparer.Ordinal).ToList()), ApiJsonContext.Default.StatsResponse);
    }
}
