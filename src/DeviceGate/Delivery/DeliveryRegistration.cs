namespace DeviceGate.Delivery;

internal static class DeliveryRegistration
{
    /// <summary>Outbox, tracker, lanes and the front of delivery, and the local router (a cluster's router builds on it).</summary>
    public static IServiceCollection AddDelivery(this IServiceCollection services)
    {
        services.AddSingleton<StatusBook>();
        services.AddSingleton<Outbox>();
        services.AddSingleton<DeliveryTracker>();
        services.AddSingleton<Lanes>();
        services.AddSingleton<DeliveryService>();
        services.AddSingleton<LocalRouter>();
        services.AddHostedService<OutboxMaintenance>();
        return services;
    }

    /// <summary>One node: routing is the local registry.</summary>
    public static IServiceCollection AddLocalRouting(this IServiceCollection services) =>
        services.AddSingleton<IDeviceRouter>(sp => sp.GetRequiredService<LocalRouter>());
}
