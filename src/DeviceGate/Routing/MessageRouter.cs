using DeviceGate.Connections;
using DeviceGate.Hosting;

namespace DeviceGate.Routing;

/// <summary>Delivers to one device, a group or every device on this node. Encodes nothing: callers hand over final bytes once.</summary>
internal sealed class MessageRouter(ConnectionRegistry registry, GroupRegistry groups, GatewayStats stats)
{
    public EnqueueResult SendToDevice(string deviceId, in OutboundMessage message)
    {
        var result = registry.TrySend(deviceId, message);
        if (result == EnqueueResult.Queued) stats.MessageOut();
        return result;
    }

    /// <returns>How many connected devices the message was queued for.</returns>
    public int Broadcast(in OutboundMessage message)
    {
        var recipients = 0;
        foreach (var connection in registry.All)
        {
            if (connection.TryEnqueue(message) == EnqueueResult.Queued) recipients++;
        }
        stats.MessagesOut(recipients);
        return recipients;
    }

    /// <returns>How many connected members the message was queued for.</returns>
    public int PublishToGroup(string group, in OutboundMessage message)
    {
        var recipients = 0;
        foreach (var member in groups.Members(group))
        {
            if (registry.TrySend(member, message) == EnqueueResult.Queued) recipients++;
        }
        stats.MessagesOut(recipients);
        return recipients;
    }
}
