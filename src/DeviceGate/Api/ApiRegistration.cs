namespace DeviceGate.Api;

internal static class ApiRegistration
{
    /// <summary>The HTTP API's services: problem details, source-generated JSON, OpenAPI, rate limiting, forwarded headers.</summary>
    public static IServiceCollection AddApi(this IServiceCollection services)
    {
        ApiPipeline.AddApiPipeline(services);
        services.AddProblemDetails();
        services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, ApiJsonContext.Default));
        return services;
    }

    /// <summary>The middleware that runs before every endpoint: forwarded headers, routing, the /api key check and measurement.</summary>
    public static WebApplication UseApi(this WebApplication app)
    {
        ApiPipeline.UseApiPipeline(app);
        return app;
    }

    /// <summary>Health, metrics, the API description, and every <c>/api</c> route (the key is checked by the middleware of <see cref="UseApi"/>).</summary>
    public static WebApplication MapApi(this WebApplication app)
    {
        ApiPipeline.MapApiPipeline(app);
        var api = app.MapGroup("/api");
        DevicesApi.Map(api);
        GroupsApi.Map(api);
        RpcApi.Map(api);
        MessagesApi.Map(api);
        BatchApi.Map(api);
        StatsApi.Map(api);
        WhoAmIApi.Map(api);
        StateApi.Map(api);
        EventsEndpoint.Map(api);
        return app;
    }
}
