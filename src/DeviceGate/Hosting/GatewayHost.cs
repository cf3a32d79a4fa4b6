using DeviceGate.Api;
using DeviceGate.Auth;
using DeviceGate.Connections;
using DeviceGate.Delivery;
using DeviceGate.Events;
using DeviceGate.Rpc;
using DeviceGate.Webhooks;
using DeviceGate.Storage;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using DeviceGate.Sessions;
using DeviceGate.Cluster;

namespace DeviceGate.Hosting;

/// <summary>Builds the gateway's web application: services, configuration, endpoints. Used by <c>serve</c> and by the tests.</summary>
public static class GatewayHost
{
    /// <summary>Creates the app. <paramref name="configure"/> lets tests add configuration or logging.</summary>
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args });
        var urls = builder.Configuration["urls"] ?? builder.Configuration["http_ports"] ?? builder.Configuration["https_ports"];
        if (string.IsNullOrEmpty(urls)) builder.WebHost.UseUrls(Defaults.Url);
        // Kestrel's own limits (header count and size, RequestHeadersTimeout against slow-drip upgrades) are
        // standard configuration under Kestrel:Limits.
        builder.WebHost.ConfigureKestrel((context, kestrel) => context.Configuration.GetSection("Kestrel:Limits").Bind(kestrel.Limits));

        // ASP.NET Core's "Request starting" line carries the query string, where browsers put their token. Off entirely
        // (it logs nothing above Information): while that logger is enabled at any level, hosting also creates an
        // Activity per request, one more object that every WebSocket connection would keep for its whole life.
        builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);
        // Per-request framework chatter ("Executing endpoint ...") drowns the gateway's own lines.
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
            o.UseUtcTimestamp = true;
        });

        AddGateway(builder.Services, builder.Configuration);
        configure?.Invoke(builder);

        var app = builder.Build();
        MapGateway(app);
        return app;
    }

    internal static void AddGateway(IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<GatewayOptions>().Bind(configuration.GetSection(GatewayOptions.SectionName)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<GatewayOptions>, GatewayOptionsValidator>();
        services.AddOptions<HostOptions>().Configure<IOptions<GatewayOptions>>((host, gateway) =>
            host.ShutdownTimeout = TimeSpan.FromSeconds(gateway.Value.Shutdown.DrainSeconds + 5));

        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<GatewayOptions>>().Value;
            return GatewaySecrets.Load(o.Auth, o.Store.Path);
        });
        services.AddSingleton<DeviceTokens>();
        services.AddSingleton<ApiKeyVerifier>();
        services.AddSingleton<NodeIdentity>();
        services.AddSingleton<GatewayMetrics>();
        services.AddSingleton<ConnectionAdmission>();
        services.AddSingleton<DeviceBudgets>();
        services.AddSingleton<LogLimiter>();
        Observability.AddObservability(services);
        services.AddSingleton<ShutdownState>();
        services.AddSingleton<ConnectionRegistry>();
        services.AddSingleton<EchoConnections>();
        if (!string.IsNullOrWhiteSpace(configuration[$"{GatewayOptions.SectionName}:Redis:Configuration"])) AddCluster(services);
        else AddSingleNode(services);
        services.AddSingleton<StatusBook>();
        services.AddSingleton<Outbox>();
        services.AddSingleton<DeliveryTracker>();
        services.AddSingleton<Lanes>();
        services.AddSingleton<DeliveryService>();
        services.AddHostedService<OutboxMaintenance>();
        services.AddSingleton<Handshake>();
        services.AddSingleton<DeviceEndpoint>();
        services.AddSingleton<EchoEndpoint>();
        services.AddSingleton<EnvelopeHandler>();
        services.AddSingleton<EventHub>();
        services.AddSingleton<RpcCoordinator>();
        services.AddSingleton<Sessions.ISessionObserver>(sp => sp.GetRequiredService<RpcCoordinator>());
        services.AddSingleton<Sessions.DeviceSessions>();
        services.AddHostedService<DrainOnShutdown>();
        services.AddHostedService<WebhookSender>();
        // Bounded retries with exponential backoff and jitter; a batch that still fails is logged and skipped.
        services.AddHttpClient(WebhookSender.ClientName).AddStandardResilienceHandler();

        services.AddProblemDetails();
        services.ConfigureHttpJsonOptions(o => o.SerializerOptions.TypeInfoResolverChain.Insert(0, ApiJsonContext.Default));
    }

    /// <summary>One node: SQLite in the data folder, presence is the local registry, nobody to talk to.</summary>
    private static void AddSingleNode(IServiceCollection services)
    {
        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<GatewayOptions>>().Value;
            return new SqliteStore(o.Store.Path, o.Store.Synchronous);
        });
        services.AddSingleton<IMessageStore>(sp => sp.GetRequiredService<SqliteStore>());
        services.AddSingleton<IDirectoryStore>(sp => sp.GetRequiredService<SqliteStore>());
        services.AddSingleton<Sessions.IPresence, Sessions.LocalPresence>();
        services.AddSingleton<IOtherNodes, NoOtherNodes>();
        services.AddSingleton<LocalDirectory>();
        services.AddSingleton<IDeviceDirectory>(sp => sp.GetRequiredService<LocalDirectory>());
        services.AddSingleton<IGroupDirectory>(sp => sp.GetRequiredService<LocalDirectory>());
        services.AddHostedService(sp => sp.GetRequiredService<LocalDirectory>());
        services.AddSingleton<LocalRouter>();
        services.AddSingleton<IDeviceRouter>(sp => sp.GetRequiredService<LocalRouter>());
    }

    /// <summary>Cluster mode: Redis holds what nodes share (store, presence) and carries what they say to each other.</summary>
    private static void AddCluster(IServiceCollection services)
    {
        services.AddSingleton<StackExchange.Redis.IConnectionMultiplexer>(sp =>
        {
            var o = sp.GetRequiredService<IOptions<GatewayOptions>>().Value;
            var config = StackExchange.Redis.ConfigurationOptions.Parse(o.Redis.Configuration!);
            // Keep trying in the background: a node starts (not ready) while Redis is away, and reconnects by itself.
            config.AbortOnConnectFail = false;
            return StackExchange.Redis.ConnectionMultiplexer.Connect(config);
        });
        services.AddSingleton(sp => new Cluster.RedisKeys(sp.GetRequiredService<IOptions<GatewayOptions>>().Value.Redis.Prefix));
        services.AddSingleton(sp => new RedisStore(sp.GetRequiredService<StackExchange.Redis.IConnectionMultiplexer>(), sp.GetRequiredService<Cluster.RedisKeys>(),
            sp.GetRequiredService<IOptions<GatewayOptions>>().Value.Delivery.StatusRetention));
        services.AddSingleton<IMessageStore>(sp => sp.GetRequiredService<RedisStore>());
        services.AddSingleton<IDirectoryStore>(sp => sp.GetRequiredService<RedisStore>());
        services.AddSingleton<Sessions.IPresence, Cluster.RedisPresence>();
        services.AddSingleton<Cluster.IClusterBus, Cluster.RedisBus>();
        services.AddSingleton<LocalRouter>();
        services.AddSingleton<IDeviceRouter, Cluster.RedisRouter>();
        services.AddSingleton<Events.IEventLog, Cluster.RedisEventLog>();
        services.AddSingleton<Cluster.ClusterStats>();
        services.AddSingleton<IOtherNodes>(sp => sp.GetRequiredService<Cluster.ClusterStats>());
        services.AddSingleton<Cluster.RedisDirectory>();
        services.AddSingleton<IDeviceDirectory>(sp => sp.GetRequiredService<Cluster.RedisDirectory>());
        services.AddSingleton<IGroupDirectory>(sp => sp.GetRequiredService<Cluster.RedisDirectory>());
        services.AddHostedService<Cluster.ClusterNode>();
    }

    internal static void MapGateway(WebApplication app)
    {
        Observability.UseObservability(app);
        app.UseWebSockets();
        Observability.MapObservability(app);

        app.MapGet("/ws", (HttpContext c, DeviceEndpoint e) => e.HandleAsync(c)).ExcludeFromDescription();
        if (app.Services.GetRequiredService<IOptions<GatewayOptions>>().Value.WebSockets.EnableEcho)
        {
            app.MapGet("/ws/echo", (HttpContext c, EchoEndpoint e) => e.HandleAsync(c)).ExcludeFromDescription();
        }

        Dashboard.DashboardEndpoints.Map(app);

        // The API key is checked by the /api middleware (Observability.UseObservability), before routing's handler runs.
        var api = app.MapGroup("/api");
        DevicesApi.Map(api);
        GroupsApi.Map(api);
        RpcApi.Map(api);
        MessagesApi.Map(api);
        BatchApi.Map(api);
        StatsApi.Map(api);
        EventsEndpoint.Map(api);
    }

    /// <summary>Resolves what start-up must check before listening: options (validated) and secrets.</summary>
    internal static void Prepare(WebApplication app)
    {
        var options = app.Services.GetRequiredService<IOptions<GatewayOptions>>().Value;
        var secrets = app.Services.GetRequiredService<GatewaySecrets>();
        app.Services.GetRequiredService<IMessageStore>();
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("DeviceGate");
        if (options.Auth.AllowAnonymousDevices) Log.AnonymousDevicesAllowed(logger);
        if (secrets.GeneratedApiKeyPath is { } keyPath)
        {
            Console.WriteLine($"""
                DeviceGate API key ({(secrets.ApiKeyCreatedNow ? "generated" : "reused")}, stored in {keyPath}):
                  {secrets.ApiKeys[0]}
                Mint a device token with:
                  dotnet run --project src/DeviceGate -c Release -- token --device <id>
                """);
        }
        Log.NodeReady(logger, app.Services.GetRequiredService<NodeIdentity>().Id, Path.GetFullPath(options.Store.Path));
    }
}
