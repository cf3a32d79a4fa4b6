using Microsoft.Extensions.Options;

namespace DeviceGate.Configuration;

internal static class ConfigurationRegistration
{
    /// <summary>The <c>DeviceGate</c> options, validated at start, and this node's id.</summary>
    public static IServiceCollection AddGatewayOptions(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<GatewayOptions>().Bind(configuration.GetSection(GatewayOptions.SectionName)).ValidateOnStart();
        services.AddSingleton<IValidateOptions<GatewayOptions>, GatewayOptionsValidator>();
        services.AddOptions<HostOptions>().Configure<IOptions<GatewayOptions>>((host, gateway) =>
            host.ShutdownTimeout = TimeSpan.FromSeconds(gateway.Value.Shutdown.DrainSeconds + 5));
        services.AddSingleton<NodeIdentity>();
        return services;
    }
}
