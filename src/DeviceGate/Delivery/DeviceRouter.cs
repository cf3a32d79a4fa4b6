using DeviceGate.Rpc;

namespace DeviceGate.Delivery;

/// <summary>
/// How a device is reached wherever it is connected: the one seam between "one node" and "a cluster", chosen once
/// at composition (<see cref="LocalRouter"/>: this node's registry; <c>Cluster.RedisRouter</c>: presence in Redis,
/// the node bus and the epoch fence). Nothing else asks which mode it runs in.
/// <para>The contract every implementation keeps (the router spec tests check it against both):</para>
/// <list type="bullet">
/// <item>Order: messages for one device accepted through one node reach its lane in the order they were handed
/// here. Two nodes' sends to one device may interleave (a send through another node crosses the bus).</item>
/// <item>At most once for ttl 0: a message goes to one session or none; false means it reached none (the caller
/// answers 404). Durable messages are stored before they come here, so false only means "delivered on reconnect".</item>
/// <item>Takeover: once a newer session of a device is registered (anywhere; registration ends before its 101),
/// nothing handed here reaches the older one; it is closed with 4000. A cluster fences by presence epoch, and a
/// takeover across nodes registers only once the old node confirmed its close (bounded by
/// <c>DeviceGate:Cluster:TakeoverConfirmation</c>), so nodes reach their own devices without asking Redis.</item>
/// <item>Failure: when what routing needs cannot be reached (Redis), the call throws
/// <see cref="Storage.StoreUnavailableException"/> (callers answer 503), except that a message for a device
/// held by this node is still handed over; nothing hangs longer than the Redis client's own timeouts.</item>
/// </list>
/// </summary>
internal interface IDeviceRouter
{
    /// <summary>Hands the message to the device's lane, wherever it is connected. False when it is connected nowhere.</summary>
    Task<bool> DeliverAsync(string device, DeviceMessage message, bool durable, DateTimeOffset? expiresAt);

    /// <summary>Queues the message for every connected device, once each (straight to their sockets, not stored).</summary>
    /// <returns>How many devices it was queued for (in a cluster, other nodes' devices as presence counts them).</returns>
    Task<int> BroadcastAsync(DeviceMessage message);

    /// <summary>Closes the device's live session wherever it is. False when it has none.</summary>
    Task<bool> CloseAsync(string device, int code, string reason);

    /// <summary>Sends an rpc to the device wherever it is and waits (at most <paramref name="timeout"/>) for its reply.</summary>
    Task<RpcOutcome> InvokeAsync(string device, MessageData request, TimeSpan timeout, CancellationToken aborted);
}

public enum RpcStatus { Replied, NotConnected, RawMode, TimedOut, Gone }

/// <summary>How an rpc ended: <see cref="Reply"/> is set when the device replied (with data or an error).</summary>
public readonly record struct RpcOutcome(RpcStatus Status, RpcReply? Reply = null);
