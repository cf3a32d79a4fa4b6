using System.Text.Json;

namespace DeviceGate.Api;

/// <summary><c>GET /api/stats</c>: the counters the dashboard charts, per node (every node's in a cluster).</summary>
internal static class StatsApi
{
    public static void Map(RouteGroupBuilder api) =>
        api.MapGet("/stats", GetAsync).WithName("Stats").Produces<StatsResponse>(200);

    private static async Task<IResult> GetAsync(GatewayMetrics metrics, NodeIdentity node, TimeProvider time, IOtherNodes others)
    {
        var nodes = new List<NodeStats> { NodeStats.Local(metrics, node, time) };
        nodes.AddRange(await others.StatsAsync().ConfigureAwait(false));
        return TypedResults.Json(new StatsResponse(nodes.OrderBy(n => n.Node, StringComparer.Ordinal).ToList()), ApiJsonContext.Default.StatsResponse);
    }
}
