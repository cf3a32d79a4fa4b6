namespace DeviceGate.Protocol;

/// <summary>The WebSocket subprotocols the gateway speaks. No subprotocol (or only unknown ones) means raw mode.</summary>
public static class Subprotocols
{
    public const string EnvelopeJson = "devicegate.v1.json";

    /// <summary>MQTT over WebSocket at <c>/mqtt</c> (MQTT 3.1.1 and 5 both name it so).</summary>
    public const string Mqtt = "mqtt";
}

public enum ConnectionMode
{
    /// <summary>Payloads as they are: text stays text, binary stays binary. The device cannot reply to rpcs or ack.</summary>
    Raw,

    /// <summary>JSON envelopes (<c>devicegate.v1.json</c>): messages with ids, sends, publishes, rpcs and acks.</summary>
    Envelope,

    /// <summary>MQTT (3.1.1 or 5): payloads as they are on <c>devices/{id}/messages</c>; a QoS 1 subscription acks with PUBACK.</summary>
    Mqtt,
}

/// <summary>The <c>code</c> of an <c>error</c> envelope. Stable strings: clients switch on them.</summary>
public static class ErrorCodes
{
    public const string BadJson = "bad_json";
    public const string UnknownType = "unknown_type";
    public const string MissingField = "missing_field";
    public const string InvalidField = "invalid_field";
    public const string Offline = "offline";
    public const string Forbidden = "forbidden";
    public const string RateLimited = "rate_limited";
    public const string BinaryNotSupported = "binary_not_supported";
    public const string OutboxFull = "outbox_full";
    public const string Unavailable = "unavailable";
    public const string QuotaExceeded = "quota_exceeded";
    public const string StateTooLarge = "state_too_large";
}

/// <summary>The <c>type</c> of each envelope, both directions.</summary>
public static class EnvelopeTypes
{
    public const string Send = "send";
    public const string Publish = "publish";
    public const string Join = "join";
    public const string Leave = "leave";
    public const string Reply = "reply";
    public const string Ack = "ack";
    public const string Report = "report";
    public const string Reported = "reported";
    public const string Message = "message";
    public const string Rpc = "rpc";
    public const string State = "state";
    public const string Sent = "sent";
    public const string Error = "error";
}
