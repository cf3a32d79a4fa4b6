namespace DeviceGate.Messages;

/// <summary>
/// One message on its way to devices. Each wire form is encoded at most once, however many devices receive it
/// (Protocol's <c>WireForms.For</c> keeps the envelope bytes here): raw devices get
/// <see cref="MessageData.RawPayload"/>, envelope devices the shared <c>message</c> envelope.
/// </summary>
public sealed class DeviceMessage(string id, string from, string? group, MessageData data)
{
    public string Id { get; } = id;
    public string From { get; } = from;
    public string? Group { get; } = group;
    public MessageData Data { get; } = data;

    /// <summary>The encoded <c>message</c> envelope, once some recipient needed it.</summary>
    internal byte[]? EnvelopeBytes { get; set; }

    public static string NewId() => Guid.CreateVersion7().ToString();
}
