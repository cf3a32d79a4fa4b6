namespace DeviceGate.Events;

internal static class EventsRegistration
{
    public static IServiceCollection AddEvents(this IServiceCollection services) => services.AddSingleton<EventHub>();
}
