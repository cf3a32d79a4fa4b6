using MQTTnet.Diagnostics.Logger;

namespace DeviceGate.Connections;

/// <summary>MQTTnet's own warnings and errors (a client's malformed packet, a handler that failed), rate-limited, in our log.</summary>
internal sealed class MqttLog(ILogger<MqttGateway> logger, LogLimiter limiter) : IMqttNetLogger
{
    public bool IsEnabled => logger.IsEnabled(LogLevel.Warning);

    public void Publish(MqttNetLogLevel level, string source, string message, object[] parameters, Exception exception)
    {
        if (level < MqttNetLogLevel.Warning || !limiter.ShouldLog("mqtt-library:" + source, out var suppressed)) return;
        var text = parameters is { Length: > 0 } ? string.Format(System.Globalization.CultureInfo.InvariantCulture, message, parameters) : message;
        Log.MqttLibrary(logger, source, LogText.Safe(text), suppressed, exception);
    }
}
