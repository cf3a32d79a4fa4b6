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

    /// <summary>MQTT devices (DeviceGate:Mqtt:Enabled): MQTTnet's server, its TCP listener and the <c>/mqtt</c> WebSocket.</summary>
    public static IServiceCollection AddMqttTransport(this IServiceCollection services)
    {
        services.AddSingleton<MqttGateway>();
        services.AddHostedService(sp => sp.GetRequiredService<MqttGateway>());
        return services;
    }

    /// <summary><c>GET /ws</c>, (unless turned off) <c>GET /ws/echo</c>, and with MQTT on, <c>GET /mqtt</c>.</summary>
    public static WebApplication MapConnections(this WebApplication app)
    {
        app.UseWebSockets();
        app.MapGet("/ws", (HttpContext c, DeviceEndpoint e) => e.HandleAsync(c)).ExcludeFromDescription();
        if (app.Services.GetRequiredService<IOptions<GatewayOptions>>().Value.WebSockets.EnableEcho)
        {
            app.MapGet("/ws/echo", (HttpContext c, EchoEndpoint e) => e.HandleAsync(c)).ExcludeFromDescription();
        }
        if (app.Services.GetRequiredService<IOptions<GatewayOptions>>().Value.Mqtt.Enabled)
        {
            app.MapGet("/mqtt", (HttpContext c, MqttGateway m) => m.HandleWebSocketAsync(c)).ExcludeFromDescription();
        }
        return app;
    }
}
