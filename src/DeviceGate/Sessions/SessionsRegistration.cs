namespace DeviceGate.Sessions;

internal static class SessionsRegistration
{
    /// <summary>The registry, admission, budgets and the one place sessions are opened and torn down, for every transport.</summary>
    public static IServiceCollection AddSessions(this IServiceCollection services)
    {
        services.AddSingleton<ConnectionRegistry>();
        services.AddSingleton<ConnectionAdmission>();
        services.AddSingleton<DeviceBudgets>();
        services.AddSingleton<ShutdownState>();
        services.AddSingleton<DeviceSessions>();
        return services;
    }

    /// <summary>One node: presence is the local registry.</summary>
    public static IServiceCollection AddLocalPresence(this IServiceCollection services) => services.AddSingleton<IPresence, LocalPresence>();
}
