using Microsoft.Extensions.Options;

namespace DeviceGate.Auth;

internal static class AuthRegistration
{
    /// <summary>Secrets (configured, or generated into the data folder), device tokens and API keys.</summary>
    public static IServiceCollection AddAuth(this IServiceCollection services)
    {
        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<GatewayOptions>>().Value;
            return GatewaySecrets.Load(o.Auth, o.Store.Path);
        });
        services.AddSingleton<DeviceTokens>();
        services.AddSingleton<ApiKeyVerifier>();
        return services;
    }
}
