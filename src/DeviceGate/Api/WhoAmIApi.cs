namespace DeviceGate.Api;

/// <summary><c>GET /api/whoami</c>: the caller's name and scopes (any valid key or API token may ask).</summary>
internal static class WhoAmIApi
{
    public static void Map(RouteGroupBuilder api) =>
        api.MapGet("/whoami", (HttpContext context) =>
        {
            var caller = ApiAccess.CallerOf(context);
            return TypedResults.Json(new WhoAmIResponse(caller.Name, caller.Grants.Select(g => g.ToString()).ToList()), ApiJsonContext.Default.WhoAmIResponse);
        }).WithName("WhoAmI").Produces<WhoAmIResponse>(200);
}
