using DeviceGate.Connections;
using DeviceGate.Protocol;

namespace DeviceGate.Routing;

/// <summary>
/// One message on its way to devices. Each wire form is encoded at most once, however many devices receive it:
/// raw devices get <see cref="MessageData.RawPayload"/>, envelope devices the shared <c>message</c> envelope.
/// </summary>
public sealed class DeviceMessage(string id, string from, string? group, MessageData data)
{
    private byte[]? _envelope;

    public string Id { get; } = id;
    public string From { get; } = from;
    public string? Group { get; } = group;
    public MessageData Data { get; } = data;

    public OutboundMessage For(ConnectionMode mode) => mode == ConnectionMode.Raw
        ? new OutboundMessage(Data.RawPayload, Data.RawType)
        : OutboundMessage.Text(_envelope ??= EnvelopeWriter.Message(this));

    public static string NewId() => Guid.CreateVersion7().ToString();
}
