namespace DeviceGate.Hosting;

/// <summary>Every log line with its stable event id. Never pass a token or a query string in here.</summary>
internal static partial class Log
{
    [LoggerMessage(1000, LogLevel.Information, "Device {DeviceId} connected from {Remote}")]
    public static partial void DeviceConnected(ILogger logger, string deviceId, string? remote);

    [LoggerMessage(1001, LogLevel.Information, "Device {DeviceId} disconnected: {CloseCode} {CloseReason} (by {ClosedBy})")]
    public static partial void DeviceDisconnected(ILogger logger, string deviceId, int closeCode, string closeReason, string closedBy);

    [LoggerMessage(1002, LogLevel.Information, "Device {DeviceId} replaced by a newer connection")]
    public static partial void DeviceReplaced(ILogger logger, string deviceId);

    [LoggerMessage(1003, LogLevel.Information, "Handshake refused with {Status}: {Reason} (device {DeviceId}, from {Remote})")]
    public static partial void HandshakeRefused(ILogger logger, int status, string reason, string? deviceId, string? remote);

    [LoggerMessage(1004, LogLevel.Debug, "Device {DeviceId} sent a {Type} message of {Bytes} bytes")]
    public static partial void RawMessageReceived(ILogger logger, string deviceId, System.Net.WebSockets.WebSocketMessageType type, int bytes);




    [LoggerMessage(1100, LogLevel.Warning, "DeviceGate:Auth:AllowAnonymousDevices is on: any client may connect as any device id without a token")]
    public static partial void AnonymousDevicesAllowed(ILogger logger);

    [LoggerMessage(1101, LogLevel.Information, "Node {NodeId} ready; data folder {DataPath}")]
    public static partial void NodeReady(ILogger logger, string nodeId, string dataPath);

    [LoggerMessage(1102, LogLevel.Information, "Draining {Count} device connections (at most {Seconds} s)")]
    public static partial void Draining(ILogger logger, int count, int seconds);

    [LoggerMessage(1103, LogLevel.Warning, "Drain deadline passed; aborting {Count} device connections")]
    public static partial void DrainAborted(ILogger logger, int count);
}
