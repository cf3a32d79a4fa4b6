using Microsoft.Extensions.Options;

namespace DeviceGate.Connections;

internal static class ConnectionsRegistration
{
    /// <summary>The WebSocket transport: handshake, device and echo endpoints, envelope handling, drain on shutdown.</summary>
    public static IServiceCollection AddWebSocketTransport(this IServiceCollection services)
    {
        services.AddSingleton<Handshake>();
        services.AddSingleton<DeviceEndpoint>();
        services.AddSingleton<EchoEndpoint>();
        services.AddSingleton<EchoConnections>();
        services.AddSingleton<EnvelopeHandler>();
        services.AddHostedService<DrainOnShutdown>();
        return services;
    }

    /// <summary><c>GET /ws</c> and (unless turned off) <c>GET /ws/echo</c>.</summary>
    public static WebApplication MapConnections(this WebApplication app)
    {
        app.UseWebSockets();
        app.MapGet("/ws", (HttpContext c, DeviceEndpoint e) => e.HandleAsync(c)).ExcludeFromDescription();
        if (app.Services.GetRequiredService<IOptions<GatewayOptions>>().Value.WebSockets.EnableEcho)
        {
            app.MapGet("/ws/echo", (HttpContext c, EchoEndpoint e) => e.HandleAsync(c)).ExcludeFromDescription();
        }
        return app;
    }
}
