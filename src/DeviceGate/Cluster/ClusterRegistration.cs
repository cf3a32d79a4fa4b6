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
        services.AddSingleton<StackExchange.Redis.IConnectionMultiplexer>(sp => Connect(sp.GetRequiredService<IOptions<GatewayOptions>>().Value));
        // With DeviceGate:Redis:MinReplicas, durable writes and their WAITs get a connection of their own.
        services.AddKeyedSingleton(DurableConnection, (sp, _) => Connect(sp.GetRequiredService<IOptions<GatewayOptions>>().Value));
        services.AddSingleton(sp => new RedisKeys(sp.GetRequiredService<IOptions<GatewayOptions>>().Value.Redis.Prefix));
        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<GatewayOptions>>().Value;
            var replication = o.Redis.MinReplicas > 0
                ? new ReplicationBarrier(sp.GetRequiredKeyedService<StackExchange.Redis.IConnectionMultiplexer>(DurableConnection), o.Redis.MinReplicas, o.Redis.ReplicationTimeout)
                : null;
            return new RedisStore(sp.GetRequiredService<StackExchange.Redis.IConnectionMultiplexer>(), sp.GetRequiredService<RedisKeys>(), o.Delivery.StatusRetention, replication);
        });
        services.AddSingleton<IMessageStore>(sp => sp.GetRequiredService<RedisStore>());
        services.AddSingleton<IDirectoryStore>(sp => sp.GetRequiredService<RedisStore>());
        services.AddSingleton<IStateStore>(sp => sp.GetRequiredService<RedisStore>());
        services.AddSingleton<RedisDirectory>();
        services.AddSingleton<IDeviceDirectory>(sp => sp.GetRequiredService<RedisDirectory>());
        services.AddSingleton<IGroupDirectory>(sp => sp.GetRequiredService<RedisDirectory>());
        services.AddSingleton<Takeovers>();
        services.AddSingleton<RedisPresence>();
        services.AddSingleton<IPresence>(sp => sp.GetRequiredService<RedisPresence>());
        services.AddSingleton<UndeliveredHints>();
        services.AddSingleton<IClusterBus, RedisBus>();
        services.AddSingleton<IDeviceRouter, RedisRouter>();
        services.AddSingleton<IEventLog, RedisEventLog>();
        services.AddSingleton<ClusterStats>();
        services.AddSingleton<IOtherNodes>(sp => sp.GetRequiredService<ClusterStats>());
        services.AddHostedService<ClusterNode>();
        return services;
    }

    private const string DurableConnection = "durable";

    private static StackExchange.Redis.IConnectionMultiplexer Connect(GatewayOptions o)
    {
        // One Redis, Sentinel endpoints with serviceName=, or a Redis Cluster's seeds: StackExchange.Redis's own syntax.
        var config = StackExchange.Redis.ConfigurationOptions.Parse(o.Redis.Configuration!);
        // Keep trying in the background: a node starts (not ready) while Redis is away, and reconnects by itself.
        config.AbortOnConnectFail = false;
        // After a Redis Cluster failover, StackExchange.Redis may keep sending a shard's writes to its demoted primary
        // (refused as "cannot be issued to a replica") until it reads the topology again: every 5 s unless configured.
        if (!o.Redis.Configuration!.Contains("configCheckSeconds", StringComparison.OrdinalIgnoreCase)) config.ConfigCheckSeconds = 5;
        return StackExchange.Redis.ConnectionMultiplexer.Connect(config);
    }
}
