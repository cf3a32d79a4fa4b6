using System.Net;
using System.Text.RegularExpressions;
using DeviceGate.Hosting;
using DeviceGate.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;

namespace DeviceGate.Tests.Functional;

/// <summary>Metrics defined once on the DeviceGate meter (issue 17): the same instruments at /metrics and over OpenTelemetry.</summary>
public sealed partial class MetricsTests
{
    private static async Task<string> ScrapeAsync(TestGateway gw)
    {
        using var anonymous = new HttpClient { BaseAddress = gw.BaseUri };
        return await anonymous.GetStringAsync("metrics");
    }

    [GeneratedRegex(@"^\| (`devicegate_[^|]+) \| (counter|gauge|histogram) \|", RegexOptions.Multiline)]
    private static partial Regex DocumentedRow();

    [GeneratedRegex("`(devicegate_[a-z_]+)")]
    private static partial Regex DocumentedName();

    [Fact]
    public async Task Every_metric_in_the_operations_table_is_served_at_metrics_with_its_type_and_nothing_else_is()
    {
        var documented = new Dictionary<string, string>();
        foreach (Match row in DocumentedRow().Matches(File.ReadAllText(Path.Combine(Repository.Root, "docs", "operations.md"))))
        {
            foreach (Match name in DocumentedName().Matches(row.Groups[1].Value)) documented[name.Groups[1].Value] = row.Groups[2].Value;
        }
        Assert.True(documented.Count >= 20, $"the table was not found: {documented.Count} rows");

        await using var gw = await TestGateway.StartAsync();
        var text = await ScrapeAsync(gw);
        var served = text.Split('\n').Where(l => l.StartsWith("# TYPE devicegate_", StringComparison.Ordinal))
            .Select(l => l.Split(' ')).ToDictionary(p => p[2], p => p[3]);
        Assert.Equal(documented.OrderBy(p => p.Key), served.OrderBy(p => p.Key));
    }

    [Fact]
    public async Task The_instruments_behind_metrics_are_exported_through_OpenTelemetry_with_the_nodes_id()
    {
        var exported = new List<Metric>();
        await using var gw = await TestGateway.StartAsync(configure: b => GatewayHost.AddMetrics(b.Services).WithMetrics(m => m.AddInMemoryExporter(exported)));
        var node = gw.App.Services.GetRequiredService<DeviceGate.Configuration.NodeIdentity>().Id;
        using (var device = await gw.ConnectAsync("otel-metered"))
        {
            using var response = await gw.Api.PostTextAsync("api/devices/otel-metered/messages", "hi");
            Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
            Assert.Equal("hi", await device.ReceiveTextAsync());
        }

        Assert.True(gw.App.Services.GetRequiredService<MeterProvider>().ForceFlush(10_000));
        // Every gateway in this process has a DeviceGate meter; this one's carry its node id.
        var mine = exported.Where(m => m.MeterName == "DeviceGate" && m.MeterTags?.Any(t => t.Key == "devicegate.node" && Equals(t.Value, node)) == true)
            .GroupBy(m => m.Name).ToDictionary(g => g.Key, g => g.Last());

        Assert.Equal(1, Sum(mine["devicegate.connections.opened"]));
        Assert.Equal(1, Sum(mine["devicegate.messages.delivered"], ("kind", "targeted")));
        Assert.Equal(1, Sum(mine["devicegate.api.requests"], ("route", "/api/devices/{id}/messages"), ("status", 202)));
        var duration = mine["devicegate.api.request_duration"];
        Assert.Equal(("s", MetricType.Histogram), (duration.Unit, duration.MetricType));
        foreach (ref readonly var point in duration.GetMetricPoints())
        {
            // The buckets /metrics has (from the instrument's advice), not OpenTelemetry's defaults.
            var bounds = new List<double>();
            foreach (var bucket in point.GetHistogramBuckets()) bounds.Add(bucket.ExplicitBound);
            Assert.Equal(0.0005, bounds[0], 1e-12);
            Assert.Equal(17, bounds.Count);
        }
        Assert.Contains("devicegate.outbox.depth", mine.Keys);
        // /metrics, from the same instruments, agrees.
        var text = await ScrapeAsync(gw);
        Assert.Equal(1, PrometheusText.Value(text, "devicegate_connections_opened_total"));
        Assert.Equal(1, PrometheusText.Value(text, "devicegate_api_requests_total{route=\"/api/devices/{id}/messages\",status=\"202\"}"));
    }

    private static long Sum(Metric metric, params (string Key, object Value)[] tags)
    {
        long sum = 0;
        foreach (ref readonly var point in metric.GetMetricPoints())
        {
            var pointTags = new Dictionary<string, object?>();
            foreach (var tag in point.Tags) pointTags[tag.Key] = tag.Value;
            if (tags.All(t => pointTags.TryGetValue(t.Key, out var v) && Equals(v, t.Value))) sum += point.GetSumLong();
        }
        return sum;
    }

    [Theory]
    [InlineData("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317", true, true)]
    [InlineData("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://127.0.0.1:4317/v1/traces", true, false)]
    [InlineData("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://127.0.0.1:4317/v1/metrics", false, true)]
    [InlineData("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317;OTEL_METRICS_EXPORTER=none", true, false)]
    [InlineData("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317;OTEL_TRACES_EXPORTER=NONE", false, true)]
    [InlineData("", false, false)]
    public void Otlp_export_follows_the_standard_variables(string variables, bool traces, bool metrics)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(variables.Split(';', StringSplitOptions.RemoveEmptyEntries)
            .Select(v => v.Split('=', 2)).ToDictionary(p => p[0], p => (string?)p[1])).Build();
        Assert.Equal((traces, metrics), (GatewayHost.Exports(configuration, "TRACES"), GatewayHost.Exports(configuration, "METRICS")));
    }
}
