using DeviceGate.Messages;

namespace DeviceGate.Protocol;

/// <summary>
/// A message as a connection of each mode receives it, encoded once per message whatever the number of recipients.
/// A desired-state message is its own envelope (lanes never hand one to a raw device).
/// </summary>
public static class WireForms
{
    public static OutboundMessage For(this DeviceMessage m, ConnectionMode mode) =>
        m.IsState ? OutboundMessage.Text(m.Data.Bytes)
        : mode == ConnectionMode.Raw ? new OutboundMessage(m.Data.RawPayload, m.Data.RawType)
        : OutboundMessage.Text(m.EnvelopeBytes ??= EnvelopeWriter.Message(m));
}
