using DeviceGate.Connections;
using DeviceGate.Hosting;
using DeviceGate.Protocol;
using DeviceGate.Routing;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;

namespace DeviceGate.Api;

/// <summary>Targeted sends, broadcast, and device presence.</summary>
internal static class DevicesApi
{
    public static void Map(RouteGroupBuilder api)
    {
        api.MapPost("/devices/{id}/messages", SendAsync).WithName("SendToDevice")
            .Produces<SendResponse>(202).ProducesProblem(400).ProducesProblem(404).ProducesProblem(413);
        api.MapPost("/broadcast", BroadcastAsync).WithName("Broadcast")
            .Produces<RecipientsResponse>(200).ProducesProblem(400).ProducesProblem(413);
        api.MapGet("/devices", List).WithName("ListDevices").Produces<DeviceListResponse>(200).ProducesProblem(400);
        api.MapGet("/devices/{id}", Get).WithName("GetDevice").Produces<DeviceResponse>(200).ProducesProblem(404);
        api.MapDelete("/devices/{id}/connection", Disconnect).WithName("DisconnectDevice").Produces(204).ProducesProblem(404);
    }

    private static async Task<IResult> SendAsync(string id, HttpRequest request, MessageRouter router, IOptions<GatewayOptions> options)
    {
        if (!DeviceId.IsValid(id) || id == DeviceId.Server) return Problems.InvalidId("device id");
        var (data, problem) = await MessageBody.ReadAsync(request, options.Value.Limits.MaxMessageBytes).ConfigureAwait(false);
        if (problem is not null) return problem;
        var message = new DeviceMessage(DeviceMessage.NewId(), DeviceId.Server, null, data);
        return router.SendToDevice(id, message) switch
        {
            EnqueueResult.Queued => TypedResults.Json(new SendResponse(message.Id, "sent"), ApiJsonContext.Default.SendResponse, statusCode: 202),
            EnqueueResult.Overflow => Problems.SlowConsumer(id),
            _ => Problems.NotConnected(id),
        };
    }

    private static async Task<IResult> BroadcastAsync(HttpRequest request, MessageRouter router, IOptions<GatewayOptions> options)
    {
        var (data, problem) = await MessageBody.ReadAsync(request, options.Value.Limits.MaxMessageBytes).ConfigureAwait(false);
        if (problem is not null) return problem;
        var message = new DeviceMessage(DeviceMessage.NewId(), DeviceId.Server, null, data);
        return TypedResults.Json(new RecipientsResponse(router.Broadcast(message)), ApiJsonContext.Default.RecipientsResponse);
    }

    private static IResult List(ConnectionRegistry registry, NodeIdentity node, int? limit, string? after)
    {
        var take = limit ?? Defaults.DeviceListLimit;
        if (take is < 1 or > 10_000) return Problems.BadQuery("limit", "limit must be between 1 and 10000.");
        // Ordinal id order makes the cursor simply the last id of the page.
        var page = registry.All
            .Where(c => after is null || string.CompareOrdinal(c.DeviceId, after) > 0)
            .OrderBy(c => c.DeviceId, StringComparer.Ordinal)
            .Take(take + 1)
            .Select(c => new DeviceSummary(c.DeviceId, c.ConnectedAt, node.Id))
            .ToList();
        string? next = null;
        if (page.Count > take)
        {
            page.RemoveAt(take);
            next = page[^1].Id;
        }
        return TypedResults.Json(new DeviceListResponse(page, next), ApiJsonContext.Default.DeviceListResponse);
    }

    private static IResult Get(string id, ConnectionRegistry registry, DeviceDirectory directory, GroupRegistry groups, NodeIdentity node)
    {
        if (!DeviceId.IsValid(id)) return Problems.InvalidId("device id");
        var online = registry.TryGet(id, out var connection) && !connection.IsClosing;
        var seen = directory.TryGetLastSeen(id, out var lastSeen);
        if (!online && !seen && !groups.IsMemberAnywhere(id)) return Problems.UnknownDevice(id);
        var response = new DeviceResponse(
            id,
            online,
            online ? connection!.ConnectedAt : null,
            seen ? lastSeen : null,
            node.Id,
            groups.GroupsOf(id),
            Queued: 0);
        return TypedResults.Json(response, ApiJsonContext.Default.DeviceResponse);
    }

    private static IResult Disconnect(string id, ConnectionRegistry registry)
    {
        if (!DeviceId.IsValid(id)) return Problems.InvalidId("device id");
        if (!registry.TryGet(id, out var connection)
            || !connection.RequestClose(CloseCodes.Disconnected, CloseReasons.Disconnected, dropBacklog: true))
        {
            return Problems.NotConnected(id);
        }
        return Results.NoContent();
    }
}
