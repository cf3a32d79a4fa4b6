using System.Net.WebSockets;

namespace DeviceGate.Messages;

/// <summary>
/// One message on its way to a device. The payload is shared: a broadcast hands the same bytes to every connection
/// and the WebSocket does the framing for each, so nobody may write to it after it is enqueued.
/// </summary>
/// <remarks><c>Message</c> is the message these bytes carry, for a transport that sends its id and sender beside the
/// payload (MQTT 5 user properties); null for what is no message (an envelope answer, an rpc).</remarks>
public readonly record struct OutboundMessage(ReadOnlyMemory<byte> Payload, WebSocketMessageType Type, IWriteObserver? Observer = null, DeviceMessage? Message = null)
{
    public static OutboundMessage Text(ReadOnlyMemory<byte> utf8) => new(utf8, WebSocketMessageType.Text);
    public static OutboundMessage Binary(ReadOnlyMemory<byte> bytes) => new(bytes, WebSocketMessageType.Binary);
}

public enum EnqueueResult
{
    /// <summary>Handed to the connection's writer.</summary>
    Queued,

    /// <summary>The connection is closing or closed; nothing was queued.</summary>
    Closed,

    /// <summary>The queue was full: the connection is being closed with 4002 and nothing was queued.</summary>
    Overflow,
}

/// <summary>Told when a message's bytes were handed to the socket (raw delivery is complete then; envelope waits for an ack).</summary>
public interface IWriteObserver
{
    void OnWritten();
}
