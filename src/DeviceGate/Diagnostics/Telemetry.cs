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

    /// <summary>Longest <c>traceparent</c> read from outside (version 00 is 55 characters; later versions may add fields).</summary>
    public const int MaxTraceParentLength = 256;

    /// <summary>The W3C <c>traceparent</c> of <paramref name="context"/>, or null for none.</summary>
    public static string? TraceParent(ActivityContext context) => context == default ? null
        : $"00-{context.TraceId.ToHexString()}-{context.SpanId.ToHexString()}-{((context.TraceFlags & ActivityTraceFlags.Recorded) != 0 ? "01" : "00")}";

    /// <summary>Reads a W3C <c>traceparent</c> someone outside sent (a device, another node); false when it is not one.</summary>
    public static bool TryParseTraceParent(string? text, out ActivityContext context)
    {
        context = default;
        return text is { Length: > 0 and <= MaxTraceParentLength } && ActivityContext.TryParse(text, null, isRemote: true, out context);
    }

    /// <summary>
    /// A span that continues a trace someone outside started (a device's <c>traceparent</c>) and becomes current. When
    /// nothing records spans, a plain activity still carries the trace on, so the context reaches the next device,
    /// the event stream and webhooks either way. The caller restores <see cref="Activity.Current"/> and stops it.
    /// </summary>
    internal static Activity Continue(string name, ActivityContext parent, string device)
    {
        var span = Source.StartActivity(name, ActivityKind.Consumer, parent)
            ?? new Activity(name).SetParentId(parent.TraceId, parent.SpanId, parent.TraceFlags).Start();
        span.SetTag("devicegate.device", device);
        return span;
    }

    /// <summary>A span that ends at once, in <paramref name="parent"/>'s trace: a step that happened now (a write, an ack).</summary>
    internal static void Mark(string name, ActivityContext parent, string device, string messageId)
    {
        if (parent == default || !Source.HasListeners()) return;
        using var a = Source.StartActivity(name, ActivityKind.Internal, parent);
        a?.SetTag("devicegate.device", device);
        a?.SetTag("devicegate.message.id", messageId);
    }
}
