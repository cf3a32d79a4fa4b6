using DeviceGate.Delivery;
using DeviceGate.Events;
using DeviceGate.Sessions;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;

namespace DeviceGate.Cluster;

internal static class ClusterRegistration
{
    /// <summary>Cluster mode: Redis holds what nodes share (store, directory, presence, events) and carries what they say to each other.</summary>
    public static IServiceCollection AddCluster(this IServiceCollection services)
    {
        services.AddSingleton<StackExchange.Redis.IConnectionMultiplexer>(sp =>
        {
            var o = sp.GetRequiredService<IOptions<GatewayOptions>>().Value;
            var config = StackExchange.Redis.ConfigurationOptions.Parse(o.Redis.Configuration!);
            // Keep trying in the background: a node starts (not ready) while Redis is away, and reconnects by itself.
            config.AbortOnConnectFail = false;
            return StackExchange.Redis.ConnectionMultiplexer.Connect(config);
        });
        services.AddSingleton(sp => new RedisKeys(sp.GetRequiredService<IOptions<GatewayOptions>>().Value.Redis.Prefix));
        services.AddSingleton(sp => new RedisStore(sp.GetRequiredService<StackExchange.Redis.IConnectionMultiplexer>(), sp.GetRequiredService<RedisKeys>(),
            sp.GetRequiredService<IOptions<GatewayOptions>>().Value.Delivery.StatusRetention));
        services.AddSingleton<IMessageStore>(sp => sp.GetRequiredService<RedisStore>());
        services.AddSingleton<IDirectoryStore>(sp => sp.GetRequiredService<RedisStore>());
        services.AddSingleton<IStateStore>(sp => sp.GetRequiredService<RedisStore>());
        services.AddSingleton<RedisDirectory>();
        services.AddSingleton<IDeviceDirectory>(sp => sp.GetRequiredService<RedisDirectory>());
        services.AddSingleton<IGroupDirectory>(sp => sp.GetRequiredService<RedisDirectory>());
        services.AddSingleton<IPresence, RedisPresence>();
        services.AddSingleton<IClusterBus, RedisBus>();
        services.AddSingleton<IDeviceRouter, RedisRouter>();
        services.AddSingleton<IEventLog, RedisEventLog>();
        services.AddSingleton<ClusterStats>();
        services.AddSingleton<IOtherNodes>(sp => sp.GetRequiredService<ClusterStats>());
        services.AddHostedService<ClusterNode>();
        return services;
    }
}
