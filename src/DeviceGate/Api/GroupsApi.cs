using DeviceGate.Connections;
using DeviceGate.Delivery;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;

namespace DeviceGate.Api;

/// <summary>Group membership (by device id, connected or not; kept across restarts) and group messages.</summary>
internal static class GroupsApi
{
    public static void Map(RouteGroupBuilder api)
    {
        api.MapPut("/groups/{group}/devices/{id}", AddAsync).WithName("AddToGroup").Produces(204).ProducesProblem(400).ProducesProblem(409).ProducesProblem(503);
        api.MapDelete("/groups/{group}/devices/{id}", RemoveAsync).WithName("RemoveFromGroup").Produces(204).ProducesProblem(400).ProducesProblem(503);
        api.MapGet("/groups", ListAsync).WithName("ListGroups").Produces<GroupListResponse>(200).ProducesProblem(400);
        api.MapGet("/groups/{group}", GetAsync).WithName("GetGroup").Produces<GroupResponse>(200).ProducesProblem(400);
        api.MapPost("/groups/{group}/messages", PublishAsync).WithName("PublishToGroup")
            .Produces<RecipientsResponse>(200).ProducesProblem(400).ProducesProblem(413).ProducesProblem(503);
    }

    private static Task<IResult> AddAsync(string group, string id, HttpContext context, IGroupDirectory groups, IDeviceDirectory directory, IOptions<GatewayOptions> options) =>
        ChangeAsync(group, id, context, async () =>
        {
            var max = options.Value.Limits.MaxGroupsPerDevice;
            if (!await groups.AddAsync(group, id, max).ConfigureAwait(false)) return TooManyGroups(id, max);
            directory.Known(id);
            return null;
        });

    private static Task<IResult> RemoveAsync(string group, string id, HttpContext context, IGroupDirectory groups) =>
        ChangeAsync(group, id, context, async () =>
        {
            await groups.RemoveAsync(group, id).ConfigureAwait(false);
            return null;
        });

    private static async Task<IResult> ChangeAsync(string group, string id, HttpContext context, Func<Task<IResult?>> change)
    {
        if (Invalid(group, id) is { } problem) return problem;
        try
        {
            return await change().ConfigureAwait(false) ?? Results.NoContent();
        }
        catch (StoreUnavailableException e)
        {
            return SendOptions.Unavailable(e);
        }
    }

    internal static ApiProblem TooManyGroups(string id, int max) => new(409, "quota_exceeded", "Too many groups",
        $"Device '{id}' is already a member of {max} groups (DeviceGate:Limits:MaxGroupsPerDevice); nothing changed.");

    /// <summary>Groups in ordinal name order, <c>limit</c> per page (default 1,000); <c>next</c> is the cursor for <c>after</c>.</summary>
    private static async Task<IResult> ListAsync(IGroupDirectory groups, int? limit, string? after)
    {
        var take = limit ?? Defaults.DeviceListLimit;
        if (take is < 1 or > 10_000) return Problems.BadQuery("limit", "limit must be between 1 and 10000.");
        var page = (await groups.GroupsAsync(after, take + 1).ConfigureAwait(false)).Select(g => new GroupSummary(g.Group, g.Members)).ToList();
        string? next = null;
        if (page.Count > take)
        {
            page.RemoveAt(take);
            next = page[^1].Group;
        }
        return TypedResults.Json(new GroupListResponse(page, next), ApiJsonContext.Default.GroupListResponse);
    }

    private static async Task<IResult> GetAsync(string group, IGroupDirectory groups)
    {
        if (!DeviceId.IsValid(group)) return Problems.InvalidId("group name");
        return TypedResults.Json(new GroupResponse(group, await groups.MembersAsync(group).ConfigureAwait(false)), ApiJsonContext.Default.GroupResponse);
    }

    private static async Task<IResult> PublishAsync(string group, HttpContext context, string? ttl, DeliveryService delivery, IOptions<GatewayOptions> options)
    {
        if (!DeviceId.IsValid(group)) return Problems.InvalidId("group name");
        if (SendOptions.TryParseTtl(ttl, options.Value.Delivery, out var lifetime) is { } badTtl) return badTtl;
        var (data, problem) = await MessageBody.ReadAsync(context.Request, options.Value.Limits.MaxMessageBytes).ConfigureAwait(false);
        if (problem is not null) return problem;
        var (recipients, queued, unavailable, _) = await delivery.PublishAsync(group, data, DeviceId.Server, lifetime, except: null).ConfigureAwait(false);
        if (unavailable && recipients + queued == 0) return SendOptions.Unavailable();
        return TypedResults.Json(new RecipientsResponse(recipients, queued), ApiJsonContext.Default.RecipientsResponse);
    }

    private static IResult? Invalid(string group, string id) =>
        !DeviceId.IsValid(group) ? Problems.InvalidId("group name")
        : !DeviceId.IsValid(id) || id == DeviceId.Server ? Problems.InvalidId("device id")
        : null;
}
