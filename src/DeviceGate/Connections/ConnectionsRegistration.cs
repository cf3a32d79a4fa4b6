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
        services.AddSingleton<ConnectionLevelUpgrades>();
        services.AddSingleton<EnvelopeHandler>();
        services.AddHostedService<DrainOnShutdown>();
        return services;
    }

    /// <summary>
    /// Puts the connection-level device upgrade in front of <paramref name="listen"/>'s HTTP layer (it passes every
    /// other connection on); whether it acts is read from the options at the first connection.
    /// </summary>
    public static void UseConnectionLevelUpgrades(this Microsoft.AspNetCore.Server.Kestrel.Core.ListenOptions listen)
    {
        ConnectionLevelUpgrades? upgrades = null;
        listen.Use(next => connection =>
        {
            upgrades ??= listen.ApplicationServices.GetRequiredService<ConnectionLevelUpgrades>();
            return upgrades.IsEnabled ? upgrades.OnConnectionAsync(connection, next) : next(connection);
        });
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
        app.MapGet("/ws", (HttpContext c, DeviceEndpoint e) => e.HandleAsync(new HttpUpgrade(c))).ExcludeFromDescription();
        if (app.Services.GetRequiredService<IOptions<GatewayOptions>>().Value.WebSockets.EnableEcho)
        {
            app.MapGet("/ws/echo", (HttpContext c, EchoEndpoint e) => e.HandleAsync(new HttpUpgrade(c))).ExcludeFromDescription();
        }
        if (app.Services.GetRequiredService<IOptions<GatewayOptions>>().Value.Mqtt.Enabled)
        {
            app.MapGet("/mqtt", (HttpContext c, MqttGateway m) => m.HandleWebSocketAsync(c)).ExcludeFromDescription();
        }
        return app;
    }
}
