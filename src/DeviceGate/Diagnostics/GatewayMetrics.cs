using System.Diagnostics.Metrics;
using Prometheus;

namespace DeviceGate.Diagnostics;

/// <summary>
/// Every metric of the gateway, defined once as an instrument of the <c>DeviceGate</c> <see cref="Meter"/>: read by
/// OpenTelemetry (OTLP export, when configured) and served as Prometheus text at <c>/metrics</c> with the names
/// dashboards know (<see cref="PrometheusView"/>). Each gateway instance has its own meter, so two in one process
/// (tests) count apart. Recording is one call into the listener: nothing noticeable when nobody scrapes.
/// </summary>
internal sealed class GatewayMetrics : IDisposable
{
    public const string MeterName = "DeviceGate";

    private readonly Meter _meter;
    private readonly PrometheusView _view;
    private Func<long>? _outboxDepth;

    public GatewayMetrics(NodeIdentity? node = null)
    {
        // The node's id as a meter tag: an exporter tells the instances apart (and so can a test with several in one process).
        _meter = new Meter(new MeterOptions(MeterName)
        {
            Version = typeof(GatewayMetrics).Assembly.GetName().Version?.ToString(),
            Tags = node is null ? null : [new KeyValuePair<string, object?>("devicegate.node", node.Id)],
        });
        _view = new PrometheusView(_meter);
        var v = _view;
        ConnectedDevices = v.UpDownCounter("devicegate.connected_devices", "{device}", "Devices with a live WebSocket on this node.");
        ConnectionsOpened = v.Counter("devicegate.connections.opened", "{connection}", "Device connections accepted (101).");
        ConnectionsClosed = new(v.Counter("devicegate.connections.closed", "{connection}", "Device connections ended, by close code.", "code"), "code");
        Upgrades = new(v.Counter("devicegate.upgrades", "{connection}", "WebSocket upgrades answered with 101 (devices and echo), by the way they were answered: connection (before the HTTP layer) or http (the HTTP pipeline).", "path"), "path");
        HandshakesRefused = new(v.Counter("devicegate.handshakes.refused", "{request}", "Upgrade requests refused before the 101, by reason.", "reason"), "reason");
        MessagesReceived = new(v.Counter("devicegate.messages.received", "{message}", "Messages devices sent, by mode (raw, envelope).", "mode"), "mode");
        MessagesDelivered = new(v.Counter("devicegate.messages.delivered", "{message}", "Messages written to device sockets, by kind (targeted, group, broadcast, rpc).", "kind"), "kind");
        BytesIn = v.Counter("devicegate.bytes.in", "By", "Payload bytes received from devices.");
        BytesOut = v.Counter("devicegate.bytes.out", "By", "Payload bytes written to devices.");
        v.ObservableGauge("devicegate.outbox.depth", "{message}", "Stored messages not yet acked, expired or cancelled.", () => _outboxDepth?.Invoke() ?? 0);
        Acks = v.Counter("devicegate.acks", "{message}", "Messages acked by envelope devices.");
        Expired = v.Counter("devicegate.expired", "{message}", "Stored messages that expired before delivery.");
        SendQueueOverflows = v.Counter("devicegate.send_queue.overflows", "{connection}", "Devices closed with 4002 because their send queue overflowed.");
        RateLimited = v.Counter("devicegate.rate_limited_messages", "{message}", "Device messages dropped by the per-device rate limit.");
        LateReplies = v.Counter("devicegate.rpc.late_replies", "{reply}", "Rpc replies that arrived after the timeout (or for an unknown rpc) and were dropped.");
        _apiRequests = v.Counter("devicegate.api.requests", "{request}", "HTTP API requests, by route pattern and status.", "route", "status");
        _apiAudit = v.Counter("devicegate.api.audit", "{request}", "API calls that change something, by caller (key name, or 'token' for API tokens), route pattern and status.", "key", "route", "status");
        _apiDuration = v.Histogram("devicegate.api.request_duration", "s", "HTTP API request duration, by route pattern.", Buckets(0.0005, 16), "route");
        DeliveryLatency = v.Histogram("devicegate.delivery.latency", "s", "From API accept to the socket write, by kind.", Buckets(0.0001, 20), "kind");
        StoreUnavailable = new(v.Counter("devicegate.store.unavailable", "{request}", "API requests answered 503 because the store or Redis could not answer, by cause.", "cause"), "cause");
        ReadLoopFaults = v.Counter("devicegate.read_loop.faults", "{connection}", "Connections closed with 1011 because handling what the device sent failed.");
        EventReadersDropped = new(v.Counter("devicegate.event_readers.dropped", "{reader}", "Event stream readers disconnected, by reason (behind, stalled).", "reason"), "reason");
        WebhookFailures = v.Counter("devicegate.webhook.failures", "{batch}", "Webhook batches that failed after retries.");
        v.Start();
    }

    /// <summary>The Prometheus registry <c>/metrics</c> serves.</summary>
    public CollectorRegistry Registry => _view.Registry;

    public UpDownCounter<long> ConnectedDevices { get; }
    public Counter<long> ConnectionsOpened { get; }
    public Labelled ConnectionsClosed { get; }
    public Labelled HandshakesRefused { get; }
    public Labelled Upgrades { get; }
    public Labelled MessagesReceived { get; }
    public Labelled MessagesDelivered { get; }
    public Counter<long> BytesIn { get; }
    public Counter<long> BytesOut { get; }
    public Counter<long> Acks { get; }
    public Counter<long> Expired { get; }
    public Counter<long> SendQueueOverflows { get; }
    public Counter<long> RateLimited { get; }
    public Counter<long> LateReplies { get; }
    public Histogram<double> DeliveryLatency { get; }
    public Counter<long> WebhookFailures { get; }
    public Counter<long> ReadLoopFaults { get; }
    public Labelled StoreUnavailable { get; }
    public Labelled EventReadersDropped { get; }

    private readonly Counter<long> _apiRequests;
    private readonly Counter<long> _apiAudit;
    private readonly Histogram<double> _apiDuration;

    /// <summary>Where the outbox depth is read when the metrics are collected (the store, once it exists).</summary>
    public void ObserveOutboxDepth(Func<long> read) => _outboxDepth = read;

    /// <summary>Counts and times one API request.</summary>
    public void ApiRequest(string route, int status, TimeSpan duration)
    {
        _apiRequests.Add(1, new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("status", status));
        _apiDuration.Record(duration.TotalSeconds, new KeyValuePair<string, object?>("route", route));
    }

    /// <summary>One API call that changes something, by caller, route pattern and status.</summary>
    public void ApiAudit(string key, string route, int status) =>
        _apiAudit.Add(1, new KeyValuePair<string, object?>("key", key), new KeyValuePair<string, object?>("route", route), new KeyValuePair<string, object?>("status", status));

    /// <summary>The delivery latency of a message of <paramref name="kind"/>.</summary>
    public void Delivered(string kind, TimeSpan latency)
    {
        MessagesDelivered.Add(kind);
        DeliveryLatency.Record(latency.TotalSeconds, new KeyValuePair<string, object?>("kind", kind));
    }

    /// <summary>What <c>/metrics</c> shows for one series of <paramref name="instrument"/> (a histogram: its count).</summary>
    public double Value(Instrument instrument, params string[] labelValues) => _view.Value(instrument, labelValues);

    public double Value(Labelled counter, string labelValue) => _view.Value(counter.Instrument, labelValue);

    /// <summary>The sum over every series of <paramref name="counter"/>.</summary>
    public double Sum(Labelled counter) => _view.Sum(counter.Instrument);

    /// <summary>The outbox depth as last collected.</summary>
    public long OutboxDepth => _outboxDepth?.Invoke() ?? 0;

    private static double[] Buckets(double start, int count) => Prometheus.Histogram.ExponentialBuckets(start, 2, count);

    public void Dispose()
    {
        _view.Dispose();
        _meter.Dispose();
    }

    /// <summary>A counter with one label: the label's name is said once, here, not at every call site.</summary>
    internal readonly struct Labelled(Counter<long> counter, string label)
    {
        public Counter<long> Instrument => counter;

        public void Add(object value, long n = 1) => counter.Add(n, new KeyValuePair<string, object?>(label, value));
    }
}
