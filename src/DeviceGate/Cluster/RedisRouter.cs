using DeviceGate.Delivery;
using DeviceGate.Rpc;
using DeviceGate.Sessions;
using DeviceGate.Storage;

namespace DeviceGate.Cluster;

/// <summary>
/// The router of a cluster node (see <see cref="IDeviceRouter"/> for the contract): a device in this node's registry
/// is reached through <see cref="LocalRouter"/> without asking Redis (a takeover by another node ends only after this
/// node closed its session: <see cref="Takeovers"/>); for any other device, where it is comes from presence in Redis,
/// and it is reached over the bus. Redis failures become <see cref="StoreUnavailableException"/>; a device held here
/// is still reached without Redis.
/// </summary>
internal sealed class RedisRouter(LocalRouter local, RedisPresence presence, IClusterBus bus, RpcCoordinator rpcs, NodeIdentity node, UndeliveredHints hints, TimeProvider time) : IDeviceRouter
{
    public async Task<bool> DeliverAsync(string device, DeviceMessage message, bool durable, DateTimeOffset? expiresAt)
    {
        // A device held here is reached without asking Redis: a takeover elsewhere ends only after this node closed
        // its session (Takeovers), and a closing session is no longer in the registry, so this registry is the truth
        // for its own devices.
        if (local.Deliver(device, message, durable, expiresAt)) return true;
        PresenceEntry? owner;
        try
        {
            owner = await presence.LocateAsync(device).ConfigureAwait(false);
        }
        catch (Exception e) when (StoreFailures.Is(e))
        {
            // Stored already: wherever the device turns out to be, it catches up once Redis answers again.
            if (durable) hints.KeepUnlocated(device);
            throw Unavailable(e);
        }
        if (owner is null) return false;
        if (owner.Node == node.Id) return local.Deliver(device, message, durable, expiresAt, owner.Epoch);
        bool arrived;
        try
        {
            arrived = await bus.DeliverAsync(owner.Node, device, message, durable, expiresAt).ConfigureAwait(false);
        }
        catch (Exception e) when (StoreFailures.Is(e))
        {
            if (durable) await hints.NoteAsync(owner.Node, device).ConfigureAwait(false);
            throw Unavailable(e);
        }
        // Stored, and its node did not hear it: that node catches up from the store on the hint.
        if (!arrived && durable) await hints.NoteAsync(owner.Node, device).ConfigureAwait(false);
        return arrived;
    }

    public async Task<int> BroadcastAsync(DeviceMessage message)
    {
        var recipients = local.Broadcast(message);
        // Every other node writes it to its own devices once; the count is what the live nodes' sets hold (a few
        // commands per node, never a scan of every device).
        await Guard(bus.BroadcastAsync(message)).ConfigureAwait(false);
        return recipients + (int)await Guard(presence.CountAsync(othersOnly: true)).ConfigureAwait(false);
    }

    public async Task<bool> CloseAsync(string device, int code, string reason)
    {
        if (local.Close(device, code, reason)) return true;
        var where = await Guard(presence.LocateAsync(device)).ConfigureAwait(false);
        if (where is null) return false;
        if (where.Node != node.Id) return await Guard(bus.CloseAsync(where.Node, device, where.Epoch, code, reason)).ConfigureAwait(false);
        return local.Close(device, code, reason);
    }

    public async Task<RpcOutcome> InvokeAsync(string device, MessageData request, TimeSpan timeout, CancellationToken aborted)
    {
        // A device held here answers here (see DeliverAsync); only one that is not asks Redis where it is.
        var here = await local.InvokeLocalAsync(device, request, timeout, aborted).ConfigureAwait(false);
        if (here.Status != RpcStatus.NotConnected) return here;
        var where = await Guard(presence.LocateAsync(device)).ConfigureAwait(false);
        if (where is null || where.Node == node.Id) return here;

        // The device's node runs it and sends the outcome back over this node's channel.
        var rpcId = Guid.CreateVersion7().ToString();
        var outcome = rpcs.BeginRemote(rpcId);
        if (!await Guard(bus.RpcAsync(where.Node, device, rpcId, request, timeout)).ConfigureAwait(false))
        {
            rpcs.EndRemote(rpcId);
            return new RpcOutcome(RpcStatus.NotConnected);
        }
        (RpcReply? Reply, string? Failure) result;
        try
        {
            result = await outcome.WaitAsync(timeout, time, aborted).ConfigureAwait(false);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            rpcs.EndRemote(rpcId);
            if (e is OperationCanceledException) throw;
            return new RpcOutcome(RpcStatus.TimedOut);
        }
        return result.Failure switch
        {
            RemoteRpc.NotConnected => new RpcOutcome(RpcStatus.NotConnected),
            RemoteRpc.Raw => new RpcOutcome(RpcStatus.RawMode),
            RemoteRpc.Gone => new RpcOutcome(RpcStatus.Gone),
            _ => new RpcOutcome(RpcStatus.Replied, result.Reply),
        };
    }

    private static async Task<T> Guard<T>(Task<T> call)
    {
        try
        {
            return await call.ConfigureAwait(false);
        }
        catch (Exception e) when (StoreFailures.Is(e) && e is not StoreUnavailableException)
        {
            throw Unavailable(e);
        }
    }

    private static async Task Guard(Task call)
    {
        try
        {
            await call.ConfigureAwait(false);
        }
        catch (Exception e) when (StoreFailures.Is(e) && e is not StoreUnavailableException)
        {
            throw Unavailable(e);
        }
    }

    private static StoreUnavailableException Unavailable(Exception e) => e as StoreUnavailableException ?? new StoreUnavailableException(e);
}

/// <summary>How a node that ran an rpc for another says it could not (the bus message's <c>failure</c>).</summary>
internal static class RemoteRpc
{
    public const string NotConnected = "not_connected";
    public const string Raw = "raw";
    public const string Gone = "gone";

    public static string? FailureOf(RpcStatus status) => status switch
    {
        RpcStatus.NotConnected => NotConnected,
        RpcStatus.RawMode => Raw,
        RpcStatus.Gone => Gone,
        _ => null,
    };
}
