namespace DeviceGate.Protocol;

/// <summary>
/// Every close code and reason the gateway sends, in one place. docs/protocol.md lists them with whether a client
/// should reconnect; keep the two in step.
/// </summary>
public static class CloseCodes
{
    /// <summary>Normal close, usually answering the device's own close. Reconnect only if the device wants to.</summary>
    public const int Normal = 1000;

    /// <summary>The server is shutting down. Reconnect with backoff.</summary>
    public const int GoingAway = 1001;

    /// <summary>Policy: token expired / revoked, rate limited. Reason tells which.</summary>
    public const int PolicyViolation = 1008;

    /// <summary>A message over DeviceGate:Limits:MaxMessageBytes. Reconnect, do not resend it.</summary>
    public const int TooBig = 1009;

    /// <summary>The server cannot serve this device right now (its stored messages could not be read). Reconnect with backoff.</summary>
    public const int InternalError = 1011;

    /// <summary>A newer connection with the same device id took over. Do not reconnect.</summary>
    public const int Replaced = 4000;

    /// <summary>Closed through the API. Reconnect with backoff.</summary>
    public const int Disconnected = 4001;

    /// <summary>The device did not read fast enough and its queue overflowed. Reconnect with backoff.</summary>
    public const int SlowConsumer = 4002;
}

/// <summary>Stable reason strings sent with the close codes, so one code can carry several meanings.</summary>
public static class CloseReasons
{
    public const string Normal = "normal";
    public const string Shutdown = "shutdown";
    public const string TokenExpired = "token_expired";
    public const string TooBig = "too_big";
    public const string Replaced = "replaced";
    public const string Disconnected = "disconnected";
    public const string SlowConsumer = "slow_consumer";
    public const string Policy = "policy";
    public const string RateLimited = "rate_limited";
    public const string TokenRevoked = "token_revoked";
    public const string StoreUnavailable = "store_unavailable";
    public const string InternalError = "internal_error";
}
