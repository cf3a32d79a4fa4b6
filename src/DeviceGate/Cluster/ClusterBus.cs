
namespace DeviceGate.Cluster;

/// <summary>
/// Messages between nodes. One node: nothing to send (every call reports "not delivered"). Cluster: Redis pub/sub,
/// one channel per node plus one for broadcasts; channel names come from <see cref="RedisKeys"/>.
/// </summary>
internal interface IClusterBus
{
    bool IsClustered { get; }

    /// <summary>Hands a message to the device's lane on <paramref name="node"/>. False when no node listened.</summary>
    Task<bool> DeliverAsync(string node, string device, DeviceMessage message, bool durable, DateTimeOffset? expiresAt);

    /// <summary>Sends a broadcast to every other node's devices.</summary>
    Task BroadcastAsync(DeviceMessage message);

    /// <summary>Asks <paramref name="node"/> to close the device's connection if its epoch is at most <paramref name="epoch"/>.</summary>
    Task<bool> CloseAsync(string node, string device, long epoch, int code, string reason);

    /// <summary>Asks <paramref name="node"/> to run an rpc on the device and send the reply back to this node.</summary>
    Task<bool> RpcAsync(string node, string device, string rpcId, MessageData data, TimeSpan timeout);

    /// <summary>Sends an rpc outcome back to the node the API call is waiting on.</summary>
    Task RpcReplyAsync(string node, string rpcId, Rpc.RpcReply? reply, string? failure);
}

internal sealed class LocalBus : IClusterBus
{
    public bool IsClustered => false;
    public Task<bool> DeliverAsync(string node, string device, DeviceMessage message, bool durable, DateTimeOffset? expiresAt) => Task.FromResult(false);
    public Task BroadcastAsync(DeviceMessage message) => Task.CompletedTask;
    public Task<bool> CloseAsync(string node, string device, long epoch, int code, string reason) => Task.FromResult(false);
    public Task<bool> RpcAsync(string node, string device, string rpcId, MessageData data, TimeSpan timeout) => Task.FromResult(false);
    public Task RpcReplyAsync(string node, string rpcId, Rpc.RpcReply? reply, string? failure) => Task.CompletedTask;
}
