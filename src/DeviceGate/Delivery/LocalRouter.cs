using DeviceGate.Protocol;
using DeviceGate.Rpc;
using DeviceGate.Sessions;

namespace DeviceGate.Delivery;

/// <summary>
/// The router of a single node, and the local half of a cluster's: everything it does is this node's registry.
/// Its synchronous methods keep a caller's order (a send completes before the next one starts).
/// </summary>
internal sealed class LocalRouter(ConnectionRegistry registry, RpcCoordinator rpcs, GatewayMetrics metrics, TimeProvider time,
    Microsoft.Extensions.Options.IOptions<GatewayOptions> options) : IDeviceRouter
{
    private readonly bool _propagateTrace = options.Value.Telemetry.PropagateToDevices;

    /// <summary>Into the local lane; with <paramref name="epoch"/>, only if that is still the device's session here (the fence).</summary>
    public bool Deliver(string device, DeviceMessage message, bool durable, DateTimeOffset? expiresAt, long? epoch = null)
    {
        if (!registry.TryGet(device, out var session) || session.Lane is not { } lane || session.IsClosing) return false;
        if (epoch is { } current && session.Epoch != current) return false;
        return lane.Push(message, durable, expiresAt);
    }

    /// <summary>To every session on this node: one encoding per mode, shared by all.</summary>
    public int Broadcast(DeviceMessage message)
    {
        var recipients = 0;
        foreach (var session in registry.All)
        {
            if (session.TryEnqueue(message.For(session.Mode, _propagateTrace)) == EnqueueResult.Queued) recipients++;
        }
        metrics.MessagesDelivered.Add(MessageKinds.Broadcast, recipients);
        return recipients;
    }

    /// <summary>Closes the device's session here; with <paramref name="maxEpoch"/>, only a session at most that old (a takeover elsewhere).</summary>
    public bool Close(string device, int code, string reason, long? maxEpoch = null) =>
        registry.TryGet(device, out var session) && (maxEpoch is not { } max || session.Epoch <= max) && session.RequestClose(code, reason, dropBacklog: true);

    /// <summary>
    /// Runs an rpc on a session of this node. <paramref name="id"/> is the rpc id another node chose, when it asked;
    /// <paramref name="trace"/> the caller's trace when it came from elsewhere (otherwise the current span's).
    /// </summary>
    public async Task<RpcOutcome> InvokeLocalAsync(string device, MessageData request, TimeSpan timeout, CancellationToken aborted, string? id = null,
        System.Diagnostics.ActivityContext trace = default)
    {
        if (!registry.TryGet(device, out var session) || session.IsClosing) return new RpcOutcome(RpcStatus.NotConnected);
        var carrier = session.Transport as IRpcCarrier;
        // Raw devices cannot answer; an MQTT device answers only while subscribed to its rpc topic.
        if (carrier is null ? session.Mode != ConnectionMode.Envelope : !carrier.AcceptsRpc) return new RpcOutcome(RpcStatus.RawMode);
        var (rpcId, reply) = rpcs.Begin(session, id);
        var traceParent = _propagateTrace ? Telemetry.TraceParent(trace != default ? trace : System.Diagnostics.Activity.Current?.Context ?? default) : null;
        var sent = carrier is not null
            ? carrier.TryEnqueueRpc(rpcId, request, traceParent)
            : session.TryEnqueue(OutboundMessage.Text(EnvelopeWriter.Rpc(rpcId, request, traceParent)));
        if (sent != EnqueueResult.Queued)
        {
            rpcs.End(rpcId);
            return new RpcOutcome(RpcStatus.NotConnected);
        }
        metrics.MessagesDelivered.Add(MessageKinds.Rpc);
        try
        {
            var answer = await reply.WaitAsync(timeout, time, aborted).ConfigureAwait(false);
            // On the rpc's span (this node's, or the delivering node's in a cluster): when the device answered.
            if (answer is not null) System.Diagnostics.Activity.Current?.AddEvent(new System.Diagnostics.ActivityEvent("rpc reply"));
            return answer is null ? new RpcOutcome(RpcStatus.Gone) : new RpcOutcome(RpcStatus.Replied, answer);
        }
        catch (TimeoutException)
        {
            rpcs.End(rpcId);
            return new RpcOutcome(RpcStatus.TimedOut);
        }
        catch (OperationCanceledException)
        {
            rpcs.End(rpcId);
            throw;
        }
    }

    Task<bool> IDeviceRouter.DeliverAsync(string device, DeviceMessage message, bool durable, DateTimeOffset? expiresAt) =>
        Task.FromResult(Deliver(device, message, durable, expiresAt));

    Task<int> IDeviceRouter.BroadcastAsync(DeviceMessage message) => Task.FromResult(Broadcast(message));

    Task<bool> IDeviceRouter.CloseAsync(string device, int code, string reason) => Task.FromResult(Close(device, code, reason));

    Task<RpcOutcome> IDeviceRouter.InvokeAsync(string device, MessageData request, TimeSpan timeout, CancellationToken aborted) =>
        InvokeLocalAsync(device, request, timeout, aborted);
}
