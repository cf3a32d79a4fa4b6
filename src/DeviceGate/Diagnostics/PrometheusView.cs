using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using Prometheus;

namespace DeviceGate.Diagnostics;

/// <summary>
/// The gateway's instruments (one <see cref="Meter"/>, read by OpenTelemetry when it exports) as Prometheus text at
/// <c>/metrics</c>, with the names those metrics have always had. Each instrument is made here with its label names,
/// so its Prometheus family exists (and unlabelled ones read 0) before anything is measured; a
/// <see cref="MeterListener"/> that listens to this meter's instruments only (another gateway in the same process has
/// its own) applies every measurement to the matching Prometheus child as it is recorded.
/// </summary>
/// <remarks>
/// Names follow one rule: dots become underscores, a counter ends in <c>_total</c>, a duration in seconds in
/// <c>_seconds</c>. prometheus-net's own MeterAdapter is not used: it exposes counters as gauges and sorts and
/// copies the tags of every measurement.
/// </remarks>
internal sealed class PrometheusView : IDisposable
{
    private readonly Meter _meter;
    private readonly MeterListener _listener = new();
    private readonly Dictionary<Instrument, Sink> _sinks = [];
    private readonly IMetricFactory _factory;

    public PrometheusView(Meter meter)
    {
        _meter = meter;
        Registry = Metrics.NewCustomRegistry();
        _factory = Metrics.WithCustomRegistry(Registry);
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (_sinks.TryGetValue(instrument, out var sink)) listener.EnableMeasurementEvents(instrument, sink);
        };
        _listener.SetMeasurementEventCallback<long>(static (_, value, tags, state) => ((Sink)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<double>(static (_, value, tags, state) => ((Sink)state!).Record(value, tags));
        // Observable instruments report when asked: once per scrape.
        Registry.AddBeforeCollectCallback(_listener.RecordObservableInstruments);
    }

    public CollectorRegistry Registry { get; }

    /// <summary>Listens from now on; call once every instrument is made (those made later are listened to as they appear).</summary>
    public void Start() => _listener.Start();

    public Counter<long> Counter(string name, string unit, string help, params string[] labels)
    {
        var instrument = _meter.CreateCounter<long>(name, unit, help);
        _sinks[instrument] = new CounterSink(_factory.CreateCounter(PrometheusName(name, unit, counter: true), help, labels), labels);
        return instrument;
    }

    /// <summary>A value that goes up and down by increments (a Prometheus gauge).</summary>
    public UpDownCounter<long> UpDownCounter(string name, string unit, string help)
    {
        var instrument = _meter.CreateUpDownCounter<long>(name, unit, help);
        _sinks[instrument] = new GaugeSink(_factory.CreateGauge(PrometheusName(name, unit, counter: false), help), [], set: false);
        return instrument;
    }

    /// <summary>A value read when collected (a Prometheus gauge).</summary>
    public ObservableGauge<long> ObservableGauge(string name, string unit, string help, Func<long> read)
    {
        var instrument = _meter.CreateObservableGauge(name, read, unit, help);
        _sinks[instrument] = new GaugeSink(_factory.CreateGauge(PrometheusName(name, unit, counter: false), help), [], set: true);
        return instrument;
    }

    public Histogram<double> Histogram(string name, string unit, string help, double[] buckets, params string[] labels)
    {
        var instrument = _meter.CreateHistogram(name, unit, help, tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = buckets });
        _sinks[instrument] = new HistogramSink(_factory.CreateHistogram(PrometheusName(name, unit, counter: false), help,
            new HistogramConfiguration { LabelNames = labels, Buckets = buckets }), labels);
        return instrument;
    }

    /// <summary>The Prometheus value of one series of <paramref name="instrument"/> (0 when never measured).</summary>
    public double Value(Instrument instrument, params string[] labelValues) => _sinks[instrument].Value(labelValues);

    /// <summary>The sum over every series of <paramref name="instrument"/>.</summary>
    public double Sum(Instrument instrument) => _sinks[instrument].Sum();

    internal static string PrometheusName(string name, string unit, bool counter) =>
        name.Replace('.', '_') + (unit == "s" ? "_seconds" : "") + (counter ? "_total" : "");

    public void Dispose() => _listener.Dispose();

    /// <summary>Where one instrument's measurements go: its Prometheus children, found by the tags' values in label order.</summary>
    private abstract class Sink(string[] labels)
    {
        protected readonly string[] Labels = labels;

        public abstract void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags);

        public abstract double Value(string[] labelValues);

        public abstract double Sum();

        /// <summary>The tags' values in label order (at most three labels: every instrument here has fewer).</summary>
        protected LabelKey KeyOf(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            object? a = null, b = null, c = null;
            foreach (var tag in tags)
            {
                var i = Array.IndexOf(Labels, tag.Key);
                if (i == 0) a = tag.Value;
                else if (i == 1) b = tag.Value;
                else if (i == 2) c = tag.Value;
            }
            return new LabelKey(a, b, c);
        }

        protected string[] ValuesOf(LabelKey key)
        {
            var values = new string[Labels.Length];
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = (i == 0 ? key.A : i == 1 ? key.B : key.C) switch
                {
                    string s => s,
                    null => "",
                    IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
                    var o => o.ToString() ?? "",
                };
            }
            return values;
        }
    }

    /// <summary>Tag values as measured (a boxed status code compares by value), so a known series costs one lookup and no strings.</summary>
    private readonly record struct LabelKey(object? A, object? B, object? C);

    private abstract class Sink<TChild>(Collector<TChild> collector, string[] labels) : Sink(labels) where TChild : ChildBase
    {
        private readonly ConcurrentDictionary<LabelKey, TChild> _children = new();
        private readonly TChild? _unlabelled = labels.Length == 0 ? collector.WithLabels() : null;

        protected TChild Child(ReadOnlySpan<KeyValuePair<string, object?>> tags) =>
            _unlabelled ?? _children.GetOrAdd(KeyOf(tags), static (key, sink) => sink.Collector.WithLabels(sink.ValuesOf(key)), this);

        protected Collector<TChild> Collector { get; } = collector;

        public override double Value(string[] labelValues) => Read(Collector.WithLabels(labelValues));

        public override double Sum() => Labels.Length == 0 ? Read(_unlabelled!) : Collector.GetAllLabelValues().Sum(v => Read(Collector.WithLabels(v)));

        protected abstract double Read(TChild child);
    }

    private sealed class CounterSink(Prometheus.Counter counter, string[] labels) : Sink<Prometheus.Counter.Child>(counter, labels)
    {
        public override void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags) => Child(tags).Inc(value);

        protected override double Read(Prometheus.Counter.Child child) => child.Value;
    }

    private sealed class GaugeSink(Gauge gauge, string[] labels, bool set) : Sink<Gauge.Child>(gauge, labels)
    {
        public override void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var child = Child(tags);
            if (set) child.Set(value);
            else if (value >= 0) child.Inc(value);
            else child.Dec(-value);
        }

        protected override double Read(Gauge.Child child) => child.Value;
    }

    private sealed class HistogramSink(Prometheus.Histogram histogram, string[] labels) : Sink<Prometheus.Histogram.Child>(histogram, labels)
    {
        public override void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags) => Child(tags).Observe(value);

        protected override double Read(Prometheus.Histogram.Child child) => child.Count;
    }
}
