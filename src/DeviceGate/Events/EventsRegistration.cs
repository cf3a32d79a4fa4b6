namespace DeviceGate.Events;

internal static class EventsRegistration
{
    public static IServiceCollection AddEvents(this IServiceCollection services) => services.AddSingleton<EventHub>();

    /// <summary>One node: it numbers its own events and keeps them in its replay ring only.</summary>
    public static IServiceCollection AddLocalEventLog(this IServiceCollection services) => services.AddSingleton<IEventLog, LocalEventLog>();
}
