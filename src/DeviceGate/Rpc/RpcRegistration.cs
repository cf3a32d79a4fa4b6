namespace DeviceGate.Rpc;

internal static class RpcRegistration
{
    /// <summary>Pending rpcs; told when a session closes, so its rpcs fail at once.</summary>
    public static IServiceCollection AddRpc(this IServiceCollection services)
    {
        services.AddSingleton<RpcCoordinator>();
        services.AddSingleton<Sessions.ISessionObserver>(sp => sp.GetRequiredService<RpcCoordinator>());
        return services;
    }
}
