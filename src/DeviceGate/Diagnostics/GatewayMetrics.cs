using Prometheus;

namespace DeviceGate.Diagnostics;

/// <summary>
/// Every metric the gateway exports at <c>/metrics</c> (Prometheus text), in one registry per gateway instance.
/// Counters are lock-free increments: they cost nothing noticeable when nobody scrapes.
/// </summary>
internal sealed class GatewayMetrics
{
    public GatewayMetrics()
    {
        Registry = Metrics.NewCustomRegistry();
        var f = Metrics.WithCustomRegistry(Registry);
        ConnectedDevices = f.CreateGauge("devicegate_connected_devices", "Devices with a live WebSocket on this node.");
        ConnectionsOpened = f.CreateCounter("devicegate_connections_opened_total", "Device connections accepted (101).");
        ConnectionsClosed = f.CreateCounter("devicegate_connections_closed_total", "Device connections ended, by close code.", "code");
        HandshakesRefused = f.CreateCounter("devicegate_handshakes_refused_total", "Upgrade requests refused before the 101, by reason.", "reason");
        MessagesReceived = f.CreateCounter("devicegate_messages_received_total", "Messages devices sent, by mode (raw, envelope).", "mode");
        MessagesDelivered = f.CreateCounter("devicegate_messages_delivered_total", "Messages written to device sockets, by kind (targeted, group, broadcast, rpc).", "kind");
        BytesIn = f.CreateCounter("devicegate_bytes_in_total", "Payload bytes received from devices.");
        BytesOut = f.CreateCounter("devicegate_bytes_out_total", "Payload bytes written to devices.");
        OutboxDepth = f.CreateGauge("devicegate_outbox_depth", "Stored messages not yet acked, expired or cancelled.");
        Acks = f.CreateCounter("devicegate_acks_total", "Messages acked by envelope devices.");
        Expired = f.CreateCounter("devicegate_expired_total", "Stored messages that expired before delivery.");
        SendQueueOverflows = f.CreateCounter("devicegate_send_queue_overflows_total", "Devices closed with 4002 because their send queue overflowed.");
        RateLimited = f.CreateCounter("devicegate_rate_limited_messages_total", "Device messages dropped by the per-device rate limit.");
        LateReplies = f.CreateCounter("devicegate_rpc_late_replies_total", "Rpc replies that arrived after the timeout (or for an unknown rpc) and were dropped.");
        ApiRequests = f.CreateCounter("devicegate_api_requests_total", "HTTP API requests, by route pattern and status.", "route", "status");
        ApiAudit = f.CreateCounter("devicegate_api_audit_total", "API calls that change something, by caller (key name, or 'token' for API tokens), route pattern and status.", "key", "route", "status");
        ApiDuration = f.CreateHistogram("devicegate_api_request_duration_seconds", "HTTP API request duration, by route pattern.",
            new HistogramConfiguration { LabelNames = ["route"], Buckets = Histogram.ExponentialBuckets(0.0005, 2, 16) });
        DeliveryLatency = f.CreateHistogram("devicegate_delivery_latency_seconds", "From API accept to the socket write, by kind.",
            new HistogramConfiguration { LabelNames = ["kind"], Buckets = Histogram.ExponentialBuckets(0.0001, 2, 20) });
        StoreUnavailable = f.CreateCounter("devicegate_store_unavailable_total", "API requests answered 503 because the store or Redis could not answer, by cause.", "cause");
        ReadLoopFaults = f.CreateCounter("devicegate_read_loop_faults_total", "Connections closed with 1011 because handling what the device sent failed.");
        EventReadersDropped = f.CreateCounter("devicegate_event_readers_dropped_total", "Event stream readers disconnected, by reason (behind, stalled).", "reason");
        WebhookFailures = f.CreateCounter("devicegate_webhook_failures_total", "Webhook batches that failed after retries.");
    }

    public CollectorRegistry Registry { get; }
    public Gauge ConnectedDevices { get; }
    public Counter ApiAudit { get; }
    public Counter ConnectionsOpened { get; }
    public Counter ConnectionsClosed { get; }
    public Counter HandshakesRefused { get; }
    public Counter MessagesReceived { get; }
    public Counter MessagesDelivered { get; }
    public Counter BytesIn { get; }
    public Counter BytesOut { get; }
    public Gauge OutboxDepth { get; }
    public Counter Acks { get; }
    public Counter Expired { get; }
    public Counter SendQueueOverflows { get; }
    public Counter RateLimited { get; }
    public Counter LateReplies { get; }
    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Route, int Status), Counter.Child> _apiCounters = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, Histogram.Child> _apiDurations = new(StringComparer.Ordinal);

    /// <summary>Counts and times one API request; labelled children are looked up once per (route, status), not built from strings each time.</summary>
    public void ApiRequest(string route, int status, TimeSpan duration)
    {
        _apiCounters.GetOrAdd((route, status), static (k, m) => m.ApiRequests.WithLabels(k.Route, k.Status.ToString(System.Globalization.CultureInfo.InvariantCulture)), this).Inc();
        _apiDurations.GetOrAdd(route, static (r, m) => m.ApiDuration.WithLabels(r), this).Observe(duration.TotalSeconds);
    }

    public Counter ApiRequests { get; }
    public Histogram ApiDuration { get; }
    public Histogram DeliveryLatency { get; }
    public Counter WebhookFailures { get; }
    public Counter ReadLoopFaults { get; }
    public Counter StoreUnavailable { get; }
    public Counter EventReadersDropped { get; }
}
