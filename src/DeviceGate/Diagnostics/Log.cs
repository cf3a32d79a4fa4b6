namespace DeviceGate.Diagnostics;

/// <summary>Every log line with its stable event id. Never pass a token or a query string in here.</summary>
internal static partial class Log
{
    [LoggerMessage(1000, LogLevel.Information, "Device {DeviceId} connected from {Remote}")]
    public static partial void DeviceConnected(ILogger logger, string deviceId, string? remote);

    [LoggerMessage(1001, LogLevel.Information, "Device {DeviceId} disconnected: {CloseCode} {CloseReason} (by {ClosedBy})")]
    public static partial void DeviceDisconnected(ILogger logger, string deviceId, int closeCode, string closeReason, string closedBy);

    [LoggerMessage(1002, LogLevel.Information, "Device {DeviceId} replaced by a newer connection")]
    public static partial void DeviceReplaced(ILogger logger, string deviceId);

    [LoggerMessage(1003, LogLevel.Information, "Handshake refused with {Status}: {Reason} (device {DeviceId}, from {Remote}); {Suppressed} more with this reason since the last such line")]
    public static partial void HandshakeRefused(ILogger logger, int status, string reason, string? deviceId, string? remote, long suppressed);

    [LoggerMessage(1006, LogLevel.Debug, "Malformed upgrade request refused with {Status}: {Reason} (from {Remote}); {Suppressed} more since the last such line")]
    public static partial void MalformedUpgrade(ILogger logger, int status, string reason, string? remote, long suppressed);

    [LoggerMessage(1007, LogLevel.Error, "A connection-level device upgrade failed (from {Remote}); the connection was dropped ({Suppressed} more since the last such line)")]
    public static partial void ConnectionUpgradeFailed(ILogger logger, string? remote, long suppressed, Exception exception);

    [LoggerMessage(1005, LogLevel.Error, "Device {DeviceId}: handling what it sent failed; closed with 1011 ({Suppressed} more such failures since the last such line)")]
    public static partial void ReadLoopFailed(ILogger logger, string deviceId, long suppressed, Exception exception);

    [LoggerMessage(1004, LogLevel.Debug, "Device {DeviceId} sent a {Type} message of {Bytes} bytes")]
    public static partial void RawMessageReceived(ILogger logger, string deviceId, System.Net.WebSockets.WebSocketMessageType type, int bytes);




    [LoggerMessage(1008, LogLevel.Debug, "Device {DeviceId} sent an envelope refused with {Code}")]
    public static partial void EnvelopeError(ILogger logger, string deviceId, string code);

    [LoggerMessage(1009, LogLevel.Warning, "Device {DeviceId} kept sending bad envelopes; closing with 1008 policy")]
    public static partial void EnvelopeAbuse(ILogger logger, string deviceId);

    [LoggerMessage(1010, LogLevel.Debug, "Device {DeviceId} replied to rpc {RpcId} too late (or to an rpc it was not sent); dropped")]
    public static partial void LateReply(ILogger logger, string deviceId, string rpcId);

    [LoggerMessage(1200, LogLevel.Warning, "Webhook POST of {Count} events to {Host} failed after retries: {Error}")]
    public static partial void WebhookFailed(ILogger logger, int count, string host, string error);

    [LoggerMessage(1201, LogLevel.Warning, "Webhook sender fell behind; resuming from event {LastId}")]
    public static partial void WebhookBehind(ILogger logger, long lastId);

    [LoggerMessage(1300, LogLevel.Error, "Message store write failed: {Error}")]
    public static partial void StoreWriteFailed(ILogger logger, string error);

    [LoggerMessage(1011, LogLevel.Debug, "Device {DeviceId} is over its message rate (an envelope's message is dropped with rate_limited; a raw or MQTT device's reading pauses)")]
    public static partial void RateLimited(ILogger logger, string deviceId);

    [LoggerMessage(1500, LogLevel.Information, "Device token keys fetched from {Address}: {Count} signing keys")]
    public static partial void IssuerKeysFetched(ILogger logger, string address, int count);

    [LoggerMessage(1501, LogLevel.Warning, "Device token keys could not be fetched from {Address} ({Error}); {State}")]
    public static partial void IssuerKeysUnavailable(ILogger logger, string address, string error, string state);

    [LoggerMessage(1600, LogLevel.Information, "API audit: {Caller} {Method} {Route} on {Target}: {Status}")]
    public static partial void ApiAudit(ILogger logger, string caller, string method, string route, string target, int status);

    [LoggerMessage(1401, LogLevel.Warning, "Cluster: Redis lost its data (FLUSHALL, or a restart without persistence): devices registered again, event numbering goes on above {LastEventId}; readers get a reset. Messages stored in Redis may be gone.")]
    public static partial void RedisDataLost(ILogger logger, long lastEventId);

    [LoggerMessage(1400, LogLevel.Warning, "Cluster: {Operation} failed: {Error}")]
    public static partial void ClusterError(ILogger logger, string operation, string error);

    [LoggerMessage(1100, LogLevel.Warning, "DeviceGate:Auth:AllowAnonymousDevices is on: any client may connect as any device id without a token")]
    public static partial void AnonymousDevicesAllowed(ILogger logger);

    [LoggerMessage(1101, LogLevel.Information, "Node {NodeId} ready; data folder {DataPath}")]
    public static partial void NodeReady(ILogger logger, string nodeId, string dataPath);

    [LoggerMessage(1102, LogLevel.Information, "Draining {Count} device connections (at most {Seconds} s)")]
    public static partial void Draining(ILogger logger, int count, int seconds);

    [LoggerMessage(1103, LogLevel.Warning, "Drain deadline passed; aborting {Count} device connections")]
    public static partial void DrainAborted(ILogger logger, int count);

    [LoggerMessage(1700, LogLevel.Warning, "MQTT ({Source}): {Message}; {Suppressed} more such lines since the last")]
    public static partial void MqttLibrary(ILogger logger, string source, string message, long suppressed, Exception? exception);

    [LoggerMessage(1701, LogLevel.Warning, "MQTT connection from {Remote} closed: a packet announced {Announced} bytes, over the {Limit} the gateway takes; {Suppressed} more such closes since the last such line")]
    public static partial void MqttPacketTooLarge(ILogger logger, string? remote, long announced, int limit, long suppressed);
}
