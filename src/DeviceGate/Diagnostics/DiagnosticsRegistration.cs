namespace DeviceGate.Diagnostics;

internal static class DiagnosticsRegistration
{
    public static IServiceCollection AddDiagnostics(this IServiceCollection services)
    {
        services.AddSingleton<GatewayMetrics>();
        services.AddSingleton<LogLimiter>();
        return services;
    }
}
