using DeviceGate.Connections;
using DeviceGate.Hosting;

namespace DeviceGate.Routing;

/// <summary>Delivers to one device, a group or every device on this node. Each wire form of a message is encoded once.</summary>
internal sealed class MessageRouter(ConnectionRegistry registry, GroupRegistry groups, GatewayStats stats)
{
    public EnqueueResult SendToDevice(string deviceId, DeviceMessage message)
    {
        var result = registry.TrySend(deviceId, message);
        if (result == EnqueueResult.Queued) stats.MessageOut();
        return result;
    }

    /// <returns>How many connected devices the message was queued for.</returns>
    public int Broadcast(DeviceMessage message)
    {
        var recipients = 0;
        foreach (var connection in registry.All)
        {
            if (connection.TryEnqueue(message.For(connection.Mode)) == EnqueueResult.Queued) recipients++;
        }
        stats.MessagesOut(recipients);
        return recipients;
    }

    /// <returns>How many connected members (other than <paramref name="except"/>) the message was queued for.</returns>
    public int PublishToGroup(string group, DeviceMessage message, string? except = null)
    {
        var recipients = 0;
        foreach (var member in groups.Members(group))
        {
            if (member == except) continue;
            if (registry.TrySend(member, message) == EnqueueResult.Queued) recipients++;
        }
        stats.MessagesOut(recipients);
        return recipients;
    }
}
