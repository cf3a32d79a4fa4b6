using DeviceGate.Messages;

namespace DeviceGate.Protocol;

/// <summary>
/// A message as a connection of each mode receives it, encoded once per message whatever the number of recipients.
/// A desired-state message is its own envelope (lanes never hand one to a raw device).
/// </summary>
public static class WireForms
{
    /// <summary>
    /// With <paramref name="propagateTrace"/> (DeviceGate:Telemetry:PropagateToDevices) the envelope names the message's
    /// trace; one node has one setting, so the envelope's bytes are still made once for every recipient.
    /// </summary>
    public static OutboundMessage For(this DeviceMessage m, ConnectionMode mode, bool propagateTrace = false) =>
        m.IsState ? OutboundMessage.Text(m.Data.Bytes) with { Message = mode == ConnectionMode.Mqtt ? m : null }
        : mode == ConnectionMode.Raw ? new OutboundMessage(m.Data.RawPayload, m.Data.RawType)
        : mode == ConnectionMode.Mqtt ? new OutboundMessage(m.Data.RawPayload, m.Data.RawType, Message: m)
        : OutboundMessage.Text(m.EnvelopeBytes ??= EnvelopeWriter.Message(m, propagateTrace ? Telemetry.TraceParent(m.Trace) : null));
}
