using System.Diagnostics;

namespace DeviceGate.Diagnostics;

/// <summary>
/// The gateway's traces: one <see cref="ActivitySource"/>, "DeviceGate". With no listener (OpenTelemetry is only
/// registered when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set, or by tests) every StartActivity is a null check.
/// A message keeps the context of the send that made it, so its socket write and its ack, which happen later on the
/// device's lane, are spans of the same trace.
/// </summary>
public static class Telemetry
{
    public const string SourceName = "DeviceGate";

    public static readonly ActivitySource Source = new(SourceName);

    /// <summary>A span that ends at once, in <paramref name="parent"/>'s trace: a step that happened now (a write, an ack).</summary>
    internal static void Mark(string name, ActivityContext parent, string device, string messageId)
    {
        if (parent == default || !Source.HasListeners()) return;
        using var a = Source.StartActivity(name, ActivityKind.Internal, parent);
        a?.SetTag("devicegate.device", device);
        a?.SetTag("devicegate.message.id", messageId);
    }
}
