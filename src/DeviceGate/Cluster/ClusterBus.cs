
namespace DeviceGate.Cluster;

/// <summary>
/// Messages between the nodes of a cluster over Redis pub/sub: one channel per node plus one for broadcasts; channel
/// names come from <see cref="RedisKeys"/>. Only the cluster's router and node use it.
/// </summary>
internal interface IClusterBus
{
    /// <summary>Hands a message to the device's lane on <paramref name="node"/>. False when no node listened.</summary>
    Task<bool> DeliverAsync(string node, string device, DeviceMessage message, bool durable, DateTimeOffset? expiresAt);

    /// <summary>Sends a broadcast to every other node's devices.</summary>
    Task BroadcastAsync(DeviceMessage message);

    /// <summary>Asks <paramref name="node"/> to close the device's connection if its epoch is at most <paramref name="epoch"/>.</summary>
    Task<bool> CloseAsync(string node, string device, long epoch, int code, string reason);

    /// <summary>Tells <paramref name="node"/>, which asked for a close, that it was carried out (see <see cref="Takeovers"/>).</summary>
    Task ClosedAsync(string node, string device, long epoch);

    /// <summary>Asks <paramref name="node"/> to run an rpc on the device and send the reply back to this node.</summary>
    Task<bool> RpcAsync(string node, string device, string rpcId, MessageData data, TimeSpan timeout);

    /// <summary>Sends an rpc outcome back to the node the API call is waiting on.</summary>
    Task RpcReplyAsync(string node, string rpcId, Rpc.RpcReply? reply, string? failure);
}
