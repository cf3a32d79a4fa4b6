using System.Diagnostics;
using System.Net;
using DeviceGate.Hosting;
using DeviceGate.Tests.Infrastructure;
using OpenTelemetry.Trace;

namespace DeviceGate.Tests.Functional;

/// <summary>OpenTelemetry traces (issue 17, first part): one trace from the API request's traceparent to the device's ack.</summary>
public sealed class TracingTests
{
    [Fact]
    public async Task A_traceparent_on_the_api_request_parents_the_send_store_commit_route_socket_write_and_ack()
    {
        var spans = new List<Activity>();
        await using var gw = await TestGateway.StartAsync(configure: b => GatewayHost.AddTracing(b.Services).WithTracing(t => t.AddInMemoryExporter(spans)));
        using var device = await gw.ConnectEnvelopeAsync("traced");
        var trace = ActivityTraceId.CreateRandom();
        var parent = ActivitySpanId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Post, "api/devices/traced/messages?ttl=60") { Content = new StringContent("follow me") };
        request.Headers.Add("traceparent", $"00-{trace}-{parent}-01");
        // A client of its own that sends the header as given (in this process, the default handler would put its own).
        using var http = ApiExtensions.Client(gw.BaseUri, TestGateway.ApiKey, new SocketsHttpHandler { ActivityHeadersPropagator = null });
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var m = await device.ReceiveJsonAsync();
        await device.SendJsonAsync(new { type = "ack", id = m.Str("id") });

        Activity[] Snapshot()
        {
            lock (spans) return spans.ToArray();
        }
        // Listeners are process-wide: other tests' spans arrive here too, so everything is picked by this trace's id.
        // The request's span is exported when Kestrel finishes the request, which may come after the device's ack.
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(Snapshot().Any(a => a.DisplayName == "DeviceGate ack" && a.TraceId == trace)
            && Snapshot().Any(a => a.Kind == ActivityKind.Server && a.TraceId == trace)), "the ack span and the request span");
        var mine = Snapshot().Where(a => a.TraceId == trace).ToList();
        Assert.True(mine.Count > 0, string.Join("\n", Snapshot().Select(a => $"{a.DisplayName} {a.Kind} {a.TraceId} parent={a.ParentSpanId}")));
        foreach (var name in new[] { "DeviceGate send", "DeviceGate store commit", "DeviceGate route", "DeviceGate socket write", "DeviceGate ack" })
        {
            Assert.Contains(mine, a => a.DisplayName == name);
        }
        // The API request span is the child of the caller's span; the message's spans carry its id.
        Assert.Contains(mine, a => a.ParentSpanId == parent && a.Kind == ActivityKind.Server);
        Assert.Equal(m.Str("id"), mine.Single(a => a.DisplayName == "DeviceGate ack").GetTagItem("devicegate.message.id"));
        // A device's own connection is no span (it would live as long as the connection).
        Assert.DoesNotContain(Snapshot(), a => a.Kind == ActivityKind.Server && (a.GetTagItem("url.path") as string)?.StartsWith("/ws", StringComparison.Ordinal) == true);
    }

    [Fact]
    public async Task In_a_cluster_one_trace_spans_the_accepting_node_the_bus_hop_and_the_delivering_node()
    {
        var onOne = new List<Activity>();
        var onTwo = new List<Activity>();
        var prefix = $"traced-{Guid.NewGuid():N}:";
        await using var one = await TestGateway.StartAsync(ClusterTests.Settings(RedisServer.Shared.Configuration, prefix, "trace-node-1"),
            configure: b => GatewayHost.AddTracing(b.Services).WithTracing(t => t.AddInMemoryExporter(onOne)));
        await using var two = await TestGateway.StartAsync(ClusterTests.Settings(RedisServer.Shared.Configuration, prefix, "trace-node-2"),
            configure: b => GatewayHost.AddTracing(b.Services).WithTracing(t => t.AddInMemoryExporter(onTwo)));
        using var device = await one.ConnectEnvelopeAsync("far-traced");
        var trace = ActivityTraceId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Post, "api/devices/far-traced/messages?ttl=60") { Content = new StringContent("across") };
        request.Headers.Add("traceparent", $"00-{trace}-{ActivitySpanId.CreateRandom()}-01");
        using var http = ApiExtensions.Client(two.BaseUri, TestGateway.ApiKey, new SocketsHttpHandler { ActivityHeadersPropagator = null });
        using (var response = await http.SendAsync(request)) Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var m = await device.ReceiveJsonAsync();
        await device.SendJsonAsync(new { type = "ack", id = m.Str("id") });

        static Activity[] Of(List<Activity> spans)
        {
            lock (spans) return spans.ToArray();
        }
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(Of(onOne).Any(a => a.DisplayName == "DeviceGate ack" && a.TraceId == trace)), "the ack span on node 1");
        // Both nodes run in this process, so each provider sees every span; what proves the hop is that the delivering
        // side's spans are children of a context that only the bus message carried (Activity.Current does not cross Redis).
        var spans = Of(onOne).Concat(Of(onTwo)).Distinct().Where(a => a.TraceId == trace && a.Source.Name == "DeviceGate").ToList();
        Assert.Equal(["DeviceGate ack", "DeviceGate bus deliver", "DeviceGate route", "DeviceGate send", "DeviceGate socket write", "DeviceGate store commit"],
            spans.Select(a => a.DisplayName).Order());
        var hop = spans.Single(a => a.DisplayName == "DeviceGate bus deliver");
        Assert.Equal(("trace-node-2", ActivityKind.Consumer), (hop.GetTagItem("devicegate.origin"), hop.Kind));
        Assert.True(hop.HasRemoteParent);
        Assert.Equal(hop.SpanId, spans.Single(a => a.DisplayName == "DeviceGate ack").ParentSpanId);
        // The Redis commands made inside a span are its children (the commit's script); those outside any span are not traced.
        var commit = spans.Single(a => a.DisplayName == "DeviceGate store commit");
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(Of(onTwo).Concat(Of(onOne)).Any(a => a.Source.Name != "DeviceGate" && a.ParentSpanId == commit.SpanId
            && a.GetTagItem("db.system") as string == "redis")), "a redis span under the store commit: " + string.Join("; ", Of(onTwo).Where(a => a.Source.Name != "DeviceGate").Take(20).Select(a => $"{a.Source.Name} {a.DisplayName} {a.ParentSpanId} {string.Join(",", a.Tags.Select(t => t.Key))}")));
        Assert.DoesNotContain(Of(onOne).Concat(Of(onTwo)), a => a.GetTagItem("db.system") as string == "redis" && a.ParentSpanId == default);
    }

    [Fact]
    public async Task An_rpc_is_a_span_of_the_callers_trace_with_the_outcome_and_the_reply_as_an_event()
    {
        var spans = new List<Activity>();
        await using var gw = await TestGateway.StartAsync(configure: b => GatewayHost.AddTracing(b.Services).WithTracing(t => t.AddInMemoryExporter(spans)));
        using var device = await gw.ConnectEnvelopeAsync("traced-rpc");
        var serving = Task.Run(async () =>
        {
            var rpc = await device.ReceiveJsonAsync();
            await device.SendJsonAsync(new { type = "reply", id = rpc.Str("id"), data = new { ok = true } });
        });
        var trace = ActivityTraceId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Post, "api/devices/traced-rpc/rpc?timeout=5") { Content = new StringContent("{}", System.Text.Encoding.UTF8, "application/json") };
        request.Headers.Add("traceparent", $"00-{trace}-{ActivitySpanId.CreateRandom()}-01");
        using var http = ApiExtensions.Client(gw.BaseUri, TestGateway.ApiKey, new SocketsHttpHandler { ActivityHeadersPropagator = null });
        using (var response = await http.SendAsync(request)) Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await serving;
        Activity[] Snapshot()
        {
            lock (spans) return spans.ToArray();
        }
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(Snapshot().Any(a => a.DisplayName == "DeviceGate rpc" && a.TraceId == trace)), "the rpc span");
        var rpcSpan = Snapshot().Single(a => a.DisplayName == "DeviceGate rpc" && a.TraceId == trace);
        Assert.Equal(("traced-rpc", "replied"), (rpcSpan.GetTagItem("devicegate.device"), rpcSpan.GetTagItem("devicegate.rpc.outcome")));
        Assert.Contains(rpcSpan.Events, e => e.Name == "rpc reply");
    }
    [Fact]
    public async Task With_propagation_a_devices_traceparent_parents_a_device_send_span_and_the_receiver_gets_the_gateways_span()
    {
        var spans = new List<Activity>();
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string> { ["DeviceGate:Telemetry:PropagateToDevices"] = "true" },
            configure: b => GatewayHost.AddTracing(b.Services).WithTracing(t => t.AddInMemoryExporter(spans)));
        using var a = await gw.ConnectEnvelopeAsync("traced-a");
        using var b = await gw.ConnectEnvelopeAsync("traced-b");
        var trace = ActivityTraceId.CreateRandom();
        var devicesSpan = ActivitySpanId.CreateRandom();
        await a.SendJsonAsync(new { type = "send", to = "traced-b", data = 1, ttl = 60, traceparent = $"00-{trace}-{devicesSpan}-01" });
        var m = await b.ReceiveJsonAsync();
        Assert.True(ActivityContext.TryParse(m.Str("traceparent"), null, out var received));
        await b.SendJsonAsync(new { type = "ack", id = m.Str("id") });

        Activity[] Snapshot()
        {
            lock (spans) return spans.ToArray();
        }
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(Snapshot().Any(s => s.DisplayName == "DeviceGate ack" && s.TraceId == trace)
            && Snapshot().Any(s => s.DisplayName == "DeviceGate device send" && s.TraceId == trace)), "the device send and the ack spans");
        var mine = Snapshot().Where(s => s.TraceId == trace).ToList();
        var deviceSend = mine.Single(s => s.DisplayName == "DeviceGate device send");
        Assert.Equal((devicesSpan, ActivityKind.Consumer, true, "traced-a"), (deviceSend.ParentSpanId, deviceSend.Kind, deviceSend.HasRemoteParent, deviceSend.GetTagItem("devicegate.device")));
        Assert.Equal(deviceSend.SpanId, mine.Single(s => s.DisplayName == "DeviceGate send").ParentSpanId);
        // The receiver continues from a span the gateway recorded (its route), not from the sender's own span.
        Assert.Equal(trace, received.TraceId);
        Assert.Contains(mine, s => s.SpanId == received.SpanId && s.DisplayName == "DeviceGate route");
    }
    [Fact]
    public async Task In_a_cluster_an_rpc_through_another_node_is_one_trace_with_the_delivering_nodes_span_and_the_device_sees_it()
    {
        var spans = new List<Activity>();
        var prefix = $"traced-rpc-{Guid.NewGuid():N}:";
        var settings = (string node) => new Dictionary<string, string>(ClusterTests.Settings(RedisServer.Shared.Configuration, prefix, node))
        {
            ["DeviceGate:Telemetry:PropagateToDevices"] = "true",
        };
        await using var one = await TestGateway.StartAsync(settings("rpc-node-1"), configure: b => GatewayHost.AddTracing(b.Services).WithTracing(t => t.AddInMemoryExporter(spans)));
        await using var two = await TestGateway.StartAsync(settings("rpc-node-2"), configure: b => GatewayHost.AddTracing(b.Services).WithTracing(t => t.AddInMemoryExporter(spans)));
        using var device = await one.ConnectEnvelopeAsync("far-rpc");
        var serving = Task.Run(async () =>
        {
            var rpc = await device.ReceiveJsonAsync();
            await device.SendJsonAsync(new { type = "reply", id = rpc.Str("id"), data = new { ok = true } });
            return rpc;
        });
        var trace = ActivityTraceId.CreateRandom();
        using var request = new HttpRequestMessage(HttpMethod.Post, "api/devices/far-rpc/rpc?timeout=10") { Content = new StringContent("{}", System.Text.Encoding.UTF8, "application/json") };
        request.Headers.Add("traceparent", $"00-{trace}-{ActivitySpanId.CreateRandom()}-01");
        using var http = ApiExtensions.Client(two.BaseUri, TestGateway.ApiKey, new SocketsHttpHandler { ActivityHeadersPropagator = null });
        using (var response = await http.SendAsync(request)) Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var delivered = await serving;

        Activity[] Snapshot()
        {
            lock (spans) return spans.ToArray();
        }
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(Snapshot().Where(a => a.TraceId == trace && a.DisplayName is "DeviceGate rpc" or "DeviceGate rpc deliver").Distinct().Count() == 2),
            "the rpc span on node 2 and the rpc deliver span on node 1");
        // Both providers are listeners in this one process, so each span is in the list twice.
        var mine = Snapshot().Where(a => a.TraceId == trace).Distinct().ToList();
        var caller = mine.Single(a => a.DisplayName == "DeviceGate rpc");
        var deliver = mine.Single(a => a.DisplayName == "DeviceGate rpc deliver");
        // The delivering node's span is the caller's child through the bus message (Activity.Current does not cross Redis).
        Assert.Equal((caller.SpanId, true, ActivityKind.Consumer, "rpc-node-2"), (deliver.ParentSpanId, deliver.HasRemoteParent, deliver.Kind, deliver.GetTagItem("devicegate.origin")));
        Assert.Equal("replied", caller.GetTagItem("devicegate.rpc.outcome"));
        Assert.Contains(deliver.Events, e => e.Name == "rpc reply");
        // And the device was handed the delivering node's span as its parent.
        Assert.True(ActivityContext.TryParse(delivered.Str("traceparent"), null, out var context));
        Assert.Equal((trace, deliver.SpanId), (context.TraceId, context.SpanId));
    }
}
