namespace DeviceGate.Messages;

/// <summary>
/// One message on its way to devices. Each wire form is encoded at most once, however many devices receive it
/// (Protocol's <c>WireForms.For</c> keeps the envelope bytes here): raw devices get
/// <see cref="MessageData.RawPayload"/>, envelope devices the shared <c>message</c> envelope.
/// </summary>
public sealed class DeviceMessage(string id, string from, string? group, MessageData data, long stateVersion = 0)
{
    public string Id { get; } = id;
    public string From { get; } = from;
    public string? Group { get; } = group;
    public MessageData Data { get; } = data;

    /// <summary>
    /// &gt; 0: a desired-state message carrying that desired version; <see cref="Data"/> is then the whole <c>state</c>
    /// envelope, only envelope devices receive it, and a newer one replaces it (latest wins).
    /// </summary>
    public long StateVersion { get; } = stateVersion;

    public bool IsState => StateVersion > 0;

    /// <summary>The encoded <c>message</c> envelope, once some recipient needed it.</summary>
    internal byte[]? EnvelopeBytes { get; set; }

    /// <summary>The trace the send that made this message belongs to (default when none was recorded): its write and ack join it.</summary>
    internal System.Diagnostics.ActivityContext Trace { get; set; }

    public static string NewId() => Guid.CreateVersion7().ToString();
}
