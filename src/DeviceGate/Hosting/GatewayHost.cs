using DeviceGate.Api;
using DeviceGate.Auth;
using DeviceGate.Connections;
using DeviceGate.Dashboard;
using DeviceGate.Delivery;
using DeviceGate.Events;
using DeviceGate.Rpc;
using DeviceGate.Webhooks;
using DeviceGate.State;
using DeviceGate.Storage;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;
using DeviceGate.Sessions;
using DeviceGate.Cluster;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

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
        builder.WebHost.ConfigureKestrel((context, kestrel) =>
        {
            context.Configuration.GetSection("Kestrel:Limits").Bind(kestrel.Limits);
            // Device upgrades answered before the HTTP layer (DeviceGate:WebSockets:ConnectionLevelUpgrade). The
            // endpoint defaults put it in front of TLS, where it sees a TLS handshake and passes it on; on the https
            // endpoints of Kestrel:Endpoints it is put once more behind Kestrel's TLS (and client certificates), so wss
            // devices are answered at the connection level too. An endpoint with SNI keeps Kestrel's own TLS set-up
            // and the HTTP pipeline for its upgrades.
            kestrel.ConfigureEndpointDefaults(listen => listen.UseConnectionLevelUpgrades());
            foreach (var endpoint in context.Configuration.GetSection("Kestrel:Endpoints").GetChildren())
            {
                if (endpoint["Url"]?.StartsWith("https:", StringComparison.OrdinalIgnoreCase) != true || endpoint.GetSection("Sni").Exists()) continue;
                kestrel.ConfigurationLoader?.Endpoint(endpoint.Key, https =>
                {
                    https.ListenOptions.UseHttps(https.HttpsOptions);
                    https.ListenOptions.UseConnectionLevelUpgrades();
                });
            }
            // Device certificates: https endpoints ask for a client certificate and let any through the TLS handshake;
            // the device handshake judges it (Auth/DeviceCertificates) and answers 401/403 like for a token.
            if (!string.IsNullOrWhiteSpace(context.Configuration["DeviceGate:Auth:ClientCertificates:CaFile"]))
            {
                kestrel.ConfigureHttpsDefaults(https =>
                {
                    https.ClientCertificateMode = Microsoft.AspNetCore.Server.Kestrel.Https.ClientCertificateMode.AllowCertificate;
                    https.AllowAnyClientCertificate();
                });
            }
        });

        // ASP.NET Core's "Request starting" line carries the query string, where browsers put their token. Off entirely
        // (it logs nothing above Information): while that logger is enabled at any level, hosting also creates an
        // Activity per request, one more object that every WebSocket connection would keep for its whole life.
        builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);
        // Per-request framework chatter ("Executing endpoint ...") drowns the gateway's own lines.
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.ClearProviders();
        // One line per entry, UTC. The formatter is configuration: Logging:Console:FormatterName=json gives one JSON
        // object per line (AddSimpleConsole would pin the simple formatter whatever the configuration says).
        builder.Logging.AddConsole();
        builder.Services.Configure<Microsoft.Extensions.Logging.Console.SimpleConsoleFormatterOptions>(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss.fff ";
            o.UseUtcTimestamp = true;
        });
        builder.Services.Configure<Microsoft.Extensions.Logging.Console.JsonConsoleFormatterOptions>(o =>
        {
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
            o.UseUtcTimestamp = true;
        });

        // Under systemd (Type=notify): readiness and stopping are reported to it, logs go to the journal's format.
        // Elsewhere this does nothing.
        builder.Host.UseSystemd();

        AddGateway(builder.Services, builder.Configuration);
        // Exported only when something collects: the standard OTEL_* variables name an OTLP endpoint (sampling per
        // OTEL_TRACES_SAMPLER; OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER = none turns one off). Otherwise no tracer
        // or meter provider exists: a span is a null check, and the metrics feed /metrics only.
        if (Exports(builder.Configuration, "TRACES")) AddTracing(builder.Services).WithTracing(t => t.AddOtlpExporter());
        if (Exports(builder.Configuration, "METRICS")) AddMetrics(builder.Services).WithMetrics(m => m.AddOtlpExporter());
        configure?.Invoke(builder);

        var app = builder.Build();
        MapGateway(app);
        return app;
    }

    /// <summary>
    /// The composition root: every feature registers itself, and the one choice between a single node and a cluster
    /// is made here, once (<c>DeviceGate:Redis:Configuration</c> set or not).
    /// </summary>
    internal static void AddGateway(IServiceCollection services, IConfiguration configuration)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.AddGatewayOptions(configuration)
            .AddDiagnostics()
            .AddAuth()
            .AddEvents()
            .AddSessions()
            .AddRpc()
            .AddDelivery()
            .AddDeviceState()
            .AddWebSocketTransport()
            .AddWebhooks()
            .AddApi();
        if (bool.TryParse(configuration[$"{GatewayOptions.SectionName}:Mqtt:Enabled"], out var mqtt) && mqtt) services.AddMqttTransport();
        if (!string.IsNullOrWhiteSpace(configuration[$"{GatewayOptions.SectionName}:Redis:Configuration"])) services.AddCluster();
        else AddSingleNode(services);
    }

    /// <summary>
    /// The tracer provider: the gateway's spans, ASP.NET Core's requests (the API's traceparent), outgoing HTTP
    /// (webhooks) and, in a cluster, the Redis commands made inside a span (the store commit's script, the bus publish).
    /// </summary>
    public static OpenTelemetry.OpenTelemetryBuilder AddTracing(IServiceCollection services) =>
        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("devicegate"))
            .WithTracing(t => t
                .AddSource(Telemetry.SourceName)
                // Device connections are long-lived upgrades: their request spans would live as long as the connection.
                .AddAspNetCoreInstrumentation(o => o.Filter = c => c.Request.Path.StartsWithSegments("/api"))
                .AddHttpClientInstrumentation()
                // The multiplexer is the cluster's, when there is one. Commands outside any span (presence heartbeats,
                // the bus subscription) would each be a trace of their own: only those inside one are kept.
                .AddRedisInstrumentation(o => o.Filter = c => c.ParentActivity is not null));

    /// <summary>Whether OTLP export of <paramref name="signal"/> (TRACES, METRICS) is configured through the standard variables.</summary>
    internal static bool Exports(IConfiguration configuration, string signal) =>
        (!string.IsNullOrWhiteSpace(configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]) || !string.IsNullOrWhiteSpace(configuration[$"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"]))
        && !string.Equals(configuration[$"OTEL_{signal}_EXPORTER"], "none", StringComparison.OrdinalIgnoreCase);

    /// <summary>The meter provider: the gateway's own meter, the instruments <c>/metrics</c> serves, by the same definitions.</summary>
    public static OpenTelemetry.OpenTelemetryBuilder AddMetrics(IServiceCollection services) =>
        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("devicegate"))
            .WithMetrics(m => m.AddMeter(GatewayMetrics.MeterName));

    /// <summary>One node: SQLite in the data folder, presence and routing are the local registry, no other nodes.</summary>
    private static void AddSingleNode(IServiceCollection services)
    {
        services.AddSqliteStorage()
            .AddLocalPresence()
            .AddLocalRouting()
            .AddLocalEventLog()
            .AddSingleton<IOtherNodes, NoOtherNodes>();
    }

    internal static void MapGateway(WebApplication app)
    {
        app.UseApi();
        app.MapConnections();
        app.MapApi();
        app.MapDashboard();
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
