using DeviceGate.Connections;
using DeviceGate.Hosting;
using DeviceGate.Routing;
using Microsoft.Extensions.Options;

namespace DeviceGate.Api;

/// <summary>Group membership (by device id, connected or not) and group messages.</summary>
internal static class GroupsApi
{
    public static void Map(RouteGroupBuilder api)
    {
        api.MapPut("/groups/{group}/devices/{id}", Add).WithName("AddToGroup").Produces(204).ProducesProblem(400);
        api.MapDelete("/groups/{group}/devices/{id}", Remove).WithName("RemoveFromGroup").Produces(204).ProducesProblem(400);
        api.MapGet("/groups/{group}", Get).WithName("GetGroup").Produces<GroupResponse>(200).ProducesProblem(400);
        api.MapPost("/groups/{group}/messages", PublishAsync).WithName("PublishToGroup")
            .Produces<RecipientsResponse>(200).ProducesProblem(400).ProducesProblem(413);
    }

    private static IResult Add(string group, string id, GroupRegistry groups)
    {
        if (Invalid(group, id) is { } problem) return problem;
        groups.Add(group, id);
        return Results.NoContent();
    }

    private static IResult Remove(string group, string id, GroupRegistry groups)
    {
        if (Invalid(group, id) is { } problem) return problem;
        groups.Remove(group, id);
        return Results.NoContent();
    }

    private static IResult Get(string group, GroupRegistry groups)
    {
        if (!DeviceId.IsValid(group)) return Problems.InvalidId("group name");
        return TypedResults.Json(new GroupResponse(group, groups.Members(group)), ApiJsonContext.Default.GroupResponse);
    }

    private static async Task<IResult> PublishAsync(string group, HttpRequest request, MessageRouter router, IOptions<GatewayOptions> options)
    {
        if (!DeviceId.IsValid(group)) return Problems.InvalidId("group name");
        var (data, problem) = await MessageBody.ReadAsync(request, options.Value.Limits.MaxMessageBytes).ConfigureAwait(false);
        if (problem is not null) return problem;
        var message = new DeviceMessage(DeviceMessage.NewId(), DeviceId.Server, group, data);
        return TypedResults.Json(new RecipientsResponse(router.PublishToGroup(group, message)), ApiJsonContext.Default.RecipientsResponse);
    }

    private static IResult? Invalid(string group, string id) =>
        !DeviceId.IsValid(group) ? Problems.InvalidId("group name")
        : !DeviceId.IsValid(id) || id == DeviceId.Server ? Problems.InvalidId("device id")
        : null;
}
