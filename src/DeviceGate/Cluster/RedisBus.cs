using System.Text.Json;
using StackExchange.Redis;

namespace DeviceGate.Cluster;

/// <summary>Node-to-node messages over Redis pub/sub (no protocol of our own beyond one JSON shape).</summary>
internal sealed class RedisBus(IConnectionMultiplexer redis, RedisKeys keys, NodeIdentity node) : IClusterBus
{
    private ISubscriber Sub => redis.GetSubscriber();

    private async Task<bool> SendAsync(RedisChannel channel, BusMessage message) =>
        await Sub.PublishAsync(channel, JsonSerializer.SerializeToUtf8Bytes(message, BusJsonContext.Default.BusMessage)).ConfigureAwait(false) > 0;

    public Task<bool> DeliverAsync(string target, string device, DeviceMessage message, bool durable, DateTimeOffset? expiresAt) =>
        SendAsync(keys.NodeChannel(target), FromMessage(BusMessage.Deliver, device, message) with
        {
            Durable = durable,
            Expires = expiresAt?.ToUnixTimeMilliseconds() ?? 0,
        });

    public Task BroadcastAsync(DeviceMessage message) => SendAsync(keys.BroadcastChannel, FromMessage(BusMessage.Broadcast, null, message));

    public Task<bool> CloseAsync(string target, string device, long epoch, int code, string reason) =>
        SendAsync(keys.NodeChannel(target), new BusMessage { Type = BusMessage.Close, Origin = node.Id, Device = device, Epoch = epoch, Code = code, Reason = reason });

    public Task ClosedAsync(string target, string device, long epoch) =>
        SendAsync(keys.NodeChannel(target), new BusMessage { Type = BusMessage.Closed, Origin = node.Id, Device = device, Epoch = epoch });

    public Task<bool> RpcAsync(string target, string device, string rpcId, MessageData data, TimeSpan timeout) =>
        SendAsync(keys.NodeChannel(target), FromMessage(BusMessage.Rpc, device,
            new DeviceMessage(rpcId, DeviceId.Server, null, data) { Trace = System.Diagnostics.Activity.Current?.Context ?? default }) with
        {
            ReplyTo = node.Id,
            TimeoutSeconds = timeout.TotalSeconds,
        });

    public Task RpcReplyAsync(string target, string rpcId, Rpc.RpcReply? reply, string? failure) =>
        SendAsync(keys.NodeChannel(target), new BusMessage
        {
            Type = BusMessage.RpcReply,
            Origin = node.Id,
            Id = rpcId,
            ReplyJson = reply?.Json,
            ErrorCode = reply?.ErrorCode,
            ErrorMessage = reply?.ErrorMessage,
            Failure = failure,
        });

    private BusMessage FromMessage(string type, string? device, DeviceMessage m)
    {
        return new BusMessage
        {
            Type = type,
            Origin = node.Id,
            Device = device,
            Id = m.Id,
            From = m.From,
            Group = m.Group,
            Kind = (int)m.Data.Kind,
            Data = m.Data.Bytes.ToArray(),
            RawIsJsonString = m.Data.RawIsJsonString,
            RawBinary = m.Data.RawType == System.Net.WebSockets.WebSocketMessageType.Binary,
            StateVersion = m.StateVersion,
            TraceParent = Telemetry.TraceParent(m.Trace),
        };
    }

    public static DeviceMessage ToMessage(BusMessage b)
    {
        var data = b.Data ?? [];
        var message = new DeviceMessage(b.Id!, b.From ?? DeviceId.Server, b.Group,
            MessageData.Restore((DataKind)b.Kind, data, b.RawBinary, b.RawIsJsonString), b.StateVersion);
        if (Telemetry.TryParseTraceParent(b.TraceParent, out var context)) message.Trace = context;
        return message;
    }
}
