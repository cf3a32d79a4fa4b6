using Microsoft.Extensions.Options;

namespace DeviceGate.Auth;

internal static class AuthRegistration
{
    /// <summary>Secrets (configured, or generated into the data folder), device tokens and API keys.</summary>
    public static IServiceCollection AddAuth(this IServiceCollection services)
    {
        services.AddSingleton<IValidateOptions<GatewayOptions>, IdentityValidator>();
        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<GatewayOptions>>().Value;
            return GatewaySecrets.Load(o.Auth, o.Store.Path);
        });
        services.AddHttpClient(nameof(IssuerKeys), c =>
        {
            c.Timeout = TimeSpan.FromSeconds(10);
            c.MaxResponseContentBufferSize = 1024 * 1024;
        });
        services.AddSingleton<IssuerKeys>();
        services.AddSingleton<DeviceCertificates>();
        services.AddHostedService(sp => sp.GetRequiredService<IssuerKeys>());
        services.AddSingleton(sp => new DeviceTokens(sp.GetRequiredService<GatewaySecrets>(), sp.GetRequiredService<IssuerKeys>(),
            sp.GetRequiredService<IOptions<GatewayOptions>>().Value.Auth.Jwt, sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton(sp => new ApiCallers(sp.GetRequiredService<GatewaySecrets>(), sp.GetRequiredService<IOptions<GatewayOptions>>(), sp.GetRequiredService<DeviceTokens>()));
        return services;
    }
}
