using DeviceGate.Cluster;
using DeviceGate.Connections;
using DeviceGate.Delivery;
using DeviceGate.Protocol;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;
using DeviceGate.Sessions;

namespace DeviceGate.Api;

/// <summary>Targeted sends, broadcast, and devices: presence, details, disconnect, forget.</summary>
internal static class DevicesApi
{
    public static void Map(RouteGroupBuilder api)
    {
        // The hottest route: its services are resolved once here, and its answer is written without a per-request
        // service scope (parameters bound from DI, and the JSON result's logger, would each create one).
        var services = ((IEndpointRouteBuilder)api).ServiceProvider;
        var delivery = services.GetRequiredService<DeliveryService>();
        var options = services.GetRequiredService<IOptions<GatewayOptions>>();
        api.MapPost("/devices/{id}/messages", (string id, HttpContext context, string? ttl) => SendAsync(id, context, ttl, delivery, options)).WithName("SendToDevice")
            .Produces<SendResponse>(202).ProducesProblem(400).ProducesProblem(404).ProducesProblem(413).ProducesProblem(429).ProducesProblem(503);
        api.MapPost("/broadcast", BroadcastAsync).WithName("Broadcast")
            .Produces<RecipientsResponse>(200).ProducesProblem(400).ProducesProblem(413);
        api.MapGet("/devices", ListAsync).WithName("ListDevices").Produces<DeviceListResponse>(200).ProducesProblem(400);
        api.MapGet("/devices/{id}", GetAsync).WithName("GetDevice").Produces<DeviceResponse>(200).ProducesProblem(404);
        api.MapDelete("/devices/{id}/connection", DisconnectAsync).WithName("DisconnectDevice").Produces(204).ProducesProblem(404);
        api.MapDelete("/devices/{id}", ForgetAsync).WithName("ForgetDevice").Produces(204).ProducesProblem(400);
        api.MapGet("/devices/{id}/messages", RecentMessagesAsync).WithName("DeviceMessages").Produces<DeviceMessagesResponse>(200).ProducesProblem(400);
        api.MapPut("/devices/{id}/tags", SetTagsAsync).WithName("SetDeviceTags").Produces(204).ProducesProblem(400).ProducesProblem(503);
        api.MapPost("/devices/{id}/revoke-tokens", RevokeAsync).WithName("RevokeDeviceTokens").Produces(204).ProducesProblem(400).ProducesProblem(503);
    }

    private static async Task<IResult> SendAsync(string id, HttpContext context, string? ttl, DeliveryService delivery, IOptions<GatewayOptions> options)
    {
        if (!DeviceId.IsValid(id) || id == DeviceId.Server) return Problems.InvalidId("device id");
        var o = options.Value;
        if (SendOptions.TryParseTtl(ttl, o.Delivery, out var lifetime) is { } badTtl) return badTtl;
        if (SendOptions.TryGetIdempotencyKey(context.Request, out var key) is { } badKey) return badKey;
        var (data, problem) = await MessageBody.ReadAsync(context.Request, o.Limits.MaxMessageBytes).ConfigureAwait(false);
        if (problem is not null) return problem;
        var result = await delivery.SendAsync(new SendRequest(id, data, lifetime, key), DeviceId.Server).ConfigureAwait(false);
        return SendOptions.Refusal(result.Outcome, id, o.Delivery.MaxQueuedPerDevice, result.Cause) ?? (IResult)new AcceptedResult(new SendResponse(result.Id, result.Status));
    }

    private static async Task<IResult> BroadcastAsync(HttpRequest request, DeliveryService delivery, IOptions<GatewayOptions> options)
    {
        var (data, problem) = await MessageBody.ReadAsync(request, options.Value.Limits.MaxMessageBytes).ConfigureAwait(false);
        if (problem is not null) return problem;
        var message = new DeviceMessage(DeviceMessage.NewId(), DeviceId.Server, null, data);
        return TypedResults.Json(new RecipientsResponse(await delivery.BroadcastAsync(message).ConfigureAwait(false), 0), ApiJsonContext.Default.RecipientsResponse);
    }

    private static async Task<IResult> ListAsync(IPresence presence, IDeviceDirectory directory, int? limit, string? after, bool? online, string? search, string[]? tag)
    {
        var take = limit ?? Defaults.DeviceListLimit;
        if (take is < 1 or > 10_000) return Problems.BadQuery("limit", "limit must be between 1 and 10000.");
        var filters = new List<TagFilter>();
        foreach (var t in tag ?? [])
        {
            if (filters.Count >= Tags.MaxTags) return Problems.BadQuery("tag", $"At most {Tags.MaxTags} tag filters.");
            if (!TagFilter.TryParse(t, out var filter)) return Problems.BadQuery("tag", "A tag filter is key:value (a tag key, then the exact value).");
            filters.Add(filter);
        }
        // Ordinal id order makes the cursor simply the last id of the page; in a cluster the list spans every node.
        List<DeviceSummary> page;
        if (online == false || filters.Count > 0)
        {
            // Known devices (with tag filters: those having every tag), connected or not; without online=false only
            // the connected ones among them, read a page at a time until this page is full.
            page = [];
            var cursor = after;
            while (page.Count <= take)
            {
                var batch = await directory.ListAsync(search, cursor, take + 1, filters).ConfigureAwait(false);
                foreach (var (id, lastSeen) in batch)
                {
                    var where = await presence.LocateAsync(id).ConfigureAwait(false);
                    if (online == false) page.Add(new DeviceSummary(id, where?.ConnectedAt, where?.Node, where is not null, lastSeen));
                    else if (where is not null) page.Add(new DeviceSummary(id, where.ConnectedAt, where.Node));
                    if (page.Count > take) break;
                }
                if (batch.Count <= take) break;
                cursor = batch[^1].Device;
            }
        }
        else
        {
            page = [];
            var cursor = after;
            while (page.Count <= take)
            {
                var batch = await presence.ListAsync(cursor, take + 1).ConfigureAwait(false);
                page.AddRange(batch.Where(p => search is null || p.Device.StartsWith(search, StringComparison.Ordinal))
                    .Select(p => new DeviceSummary(p.Device, p.ConnectedAt, p.Node)));
                if (batch.Count <= take) break;
                cursor = batch[^1].Device;
            }
            if (page.Count > take + 1) page.RemoveRange(take + 1, page.Count - take - 1);
        }
        string? next = null;
        if (page.Count > take)
        {
            page.RemoveAt(take);
            next = page[^1].Id;
        }
        return TypedResults.Json(new DeviceListResponse(page, next), ApiJsonContext.Default.DeviceListResponse);
    }

    private static async Task<IResult> GetAsync(string id, IPresence presence, IDeviceDirectory directory, IGroupDirectory groups,
        IDirectoryStore store, NodeIdentity node, TimeProvider time)
    {
        if (!DeviceId.IsValid(id)) return Problems.InvalidId("device id");
        var where = await presence.LocateAsync(id).ConfigureAwait(false);
        var (known, lastSeen) = await directory.LookupAsync(id).ConfigureAwait(false);
        var memberOf = await groups.GroupsOfAsync(id).ConfigureAwait(false);
        if (where is null && !known && memberOf.Count == 0) return Problems.UnknownDevice(id);
        var response = new DeviceResponse(
            id,
            where is not null,
            where?.ConnectedAt,
            lastSeen,
            where?.Node ?? node.Id,
            memberOf,
            await store.CountQueuedAsync(id, time.GetUtcNow()).ConfigureAwait(false),
            await directory.TagsAsync(id).ConfigureAwait(false),
            where?.Transport,
            where?.Protocol);
        return TypedResults.Json(response, ApiJsonContext.Default.DeviceResponse);
    }

    private static async Task<IResult> DisconnectAsync(string id, IDeviceRouter router)
    {
        if (!DeviceId.IsValid(id)) return Problems.InvalidId("device id");
        return await router.CloseAsync(id, CloseCodes.Disconnected, CloseReasons.Disconnected).ConfigureAwait(false)
            ? Results.NoContent()
            : Problems.NotConnected(id);
    }

    /// <summary>The device's queued and recent messages with their status, newest first.</summary>
    private static async Task<IResult> RecentMessagesAsync(string id, int? limit, IMessageStore store)
    {
        if (!DeviceId.IsValid(id)) return Problems.InvalidId("device id");
        var take = Math.Clamp(limit ?? 50, 1, 100);
        var records = await store.RecentAsync(id, take).ConfigureAwait(false);
        return TypedResults.Json(new DeviceMessagesResponse(records.Select(MessagesApi.ToResponse).ToList()), ApiJsonContext.Default.DeviceMessagesResponse);
    }

    /// <summary>Replaces the device's tags (an empty object removes them); makes it known.</summary>
    private static async Task<IResult> SetTagsAsync(string id, HttpRequest request, IDeviceDirectory directory)
    {
        if (!DeviceId.IsValid(id) || id == DeviceId.Server) return Problems.InvalidId("device id");
        var body = await MessageBody.ReadBytesAsync(request, Tags.MaxBodyBytes).ConfigureAwait(false);
        string? why = $"A tags body is at most {Tags.MaxBodyBytes} bytes.";
        if (body is null || !Tags.TryParse(body, out var tags, out why)) return new ApiProblem(400, "invalid_tags", "Invalid tags", why!);
        try
        {
            await directory.SetTagsAsync(id, tags).ConfigureAwait(false);
        }
        catch (StoreUnavailableException e)
        {
            return SendOptions.Unavailable(e);
        }
        return Results.NoContent();
    }

    /// <summary>Refuses every token of the device issued until now (persistently) and closes its live connection with 1008 token_revoked.</summary>
    private static async Task<IResult> RevokeAsync(string id, IDeviceRouter router, IDeviceDirectory directory, TimeProvider time)
    {
        if (!DeviceId.IsValid(id) || id == DeviceId.Server) return Problems.InvalidId("device id");
        try
        {
            await directory.RevokeTokensAsync(id, time.GetUtcNow()).ConfigureAwait(false);
        }
        catch (StoreUnavailableException e)
        {
            return SendOptions.Unavailable(e);
        }
        await router.CloseAsync(id, CloseCodes.PolicyViolation, CloseReasons.TokenRevoked).ConfigureAwait(false);
        return Results.NoContent();
    }

    /// <summary>Forgets a device: closes it (4001), cancels its outbox, drops its memberships and last-seen.</summary>
    private static async Task<IResult> ForgetAsync(string id, IDeviceRouter router, IDeviceDirectory directory)
    {
        if (!DeviceId.IsValid(id)) return Problems.InvalidId("device id");
        await router.CloseAsync(id, CloseCodes.Disconnected, CloseReasons.Disconnected).ConfigureAwait(false);
        try
        {
            await directory.ForgetAsync(id).ConfigureAwait(false);
        }
        catch (StoreUnavailableException e)
        {
            return SendOptions.Unavailable(e);
        }
        return Results.NoContent();
    }
}

/// <summary>202 with the send's id and status, serialized straight into the response (source-generated, no logger lookup).</summary>
internal sealed class AcceptedResult(SendResponse response) : IResult
{
    public Task ExecuteAsync(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status202Accepted;
        context.Response.ContentType = "application/json; charset=utf-8";
        using (var json = new System.Text.Json.Utf8JsonWriter(context.Response.BodyWriter))
        {
            System.Text.Json.JsonSerializer.Serialize(json, response, ApiJsonContext.Default.SendResponse);
        }
        return context.Response.BodyWriter.FlushAsync(context.RequestAborted).AsTask();
    }
}
