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
        using var http = new HttpClient(new SocketsHttpHandler { ActivityHeadersPropagator = null }) { BaseAddress = gw.BaseUri, Timeout = Timeouts.Default };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", TestGateway.ApiKey);
        using var response = await http.SendAsync(request);
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var m = await device.ReceiveJsonAsync();
        await device.SendJsonAsync(new { type = "ack", id = m.Str("id") });

        Activity[] Snapshot()
        {
            lock (spans) return spans.ToArray();
        }
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(Snapshot().Any(a => a.DisplayName == "DeviceGate ack")), "the ack span");
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
}
