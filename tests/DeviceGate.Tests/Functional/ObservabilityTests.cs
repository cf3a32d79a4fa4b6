using System.Net;
using System.Text.Json;
using DeviceGate.Tests.Infrastructure;
using Microsoft.AspNetCore.Routing;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;

namespace DeviceGate.Tests.Functional;

public sealed class ObservabilityTests : GatewayTest
{
    private async Task<string> ScrapeAsync()
    {
        using var anonymous = new HttpClient { BaseAddress = Gw.BaseUri };
        using var response = await anonymous.GetAsync("metrics");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.Content.ReadAsStringAsync();
    }

    [Fact]
    public async Task Metrics_move_as_devices_connect_messages_flow_and_handshakes_are_refused()
    {
        var before = await ScrapeAsync();
        Assert.Equal("gauge", PrometheusText.Type(before, "devicegate_connected_devices"));
        Assert.Equal("counter", PrometheusText.Type(before, "devicegate_connections_opened_total"));
        Assert.Equal("histogram", PrometheusText.Type(before, "devicegate_delivery_latency_seconds"));

        using var device = await Gw.ConnectAsync("metered");
        using (var refused = new System.Net.WebSockets.ClientWebSocket())
        {
            await Assert.ThrowsAsync<System.Net.WebSockets.WebSocketException>(() =>
                refused.ConnectAsync(Gw.WsUri("ws?deviceId=metered-2"), new CancellationTokenSource(Timeouts.Default).Token));
        }
        await Gw.Api.PostTextAsync("api/devices/metered/messages", "0123456789");
        Assert.Equal("0123456789", await device.ReceiveTextAsync());
        await device.SendTextAsync("hello");

        string after = "";
        await ApiExtensions.EventuallyAsync(async () =>
        {
            after = await ScrapeAsync();
            return PrometheusText.Value(after, "devicegate_messages_received_total{mode=\"raw\"}") >= 1;
        }, "inbound message counted");
        Assert.Equal(1, PrometheusText.Value(after, "devicegate_connected_devices"));
        Assert.Equal(1, PrometheusText.Value(after, "devicegate_connections_opened_total"));
        Assert.Equal(1, PrometheusText.Value(after, "devicegate_handshakes_refused_total{reason=\"token_missing\"}"));
        Assert.Equal(1, PrometheusText.Value(after, "devicegate_messages_delivered_total{kind=\"targeted\"}"));
        Assert.True(PrometheusText.Value(after, "devicegate_bytes_out_total") >= 10);
        Assert.True(PrometheusText.Value(after, "devicegate_bytes_in_total") >= 5);
        Assert.Equal(1, PrometheusText.Value(after, "devicegate_delivery_latency_seconds_count{kind=\"targeted\"}"));
        Assert.True(PrometheusText.Value(after, "devicegate_api_requests_total{route=\"/api/devices/{id}/messages\",status=\"202\"}") >= 1);

        await device.CloseCleanlyAsync();
        await ApiExtensions.EventuallyAsync(async () =>
        {
            var closed = await ScrapeAsync();
            return PrometheusText.Value(closed, "devicegate_connected_devices") == 0
                && PrometheusText.Value(closed, "devicegate_connections_closed_total{code=\"1000\"}") == 1;
        }, "disconnect counted");
    }

    [Fact]
    public async Task Outbox_depth_counts_stored_messages()
    {
        for (var i = 0; i < 3; i++) await Gw.Api.PostTextAsync("api/devices/offline-meter/messages?ttl=60", "x");
        Assert.Equal(3, PrometheusText.Value(await ScrapeAsync(), "devicegate_outbox_depth"));
    }

    [Fact]
    public async Task Readiness_flips_while_the_database_is_locked_by_another_process()
    {
        using var anonymous = new HttpClient { BaseAddress = Gw.BaseUri };
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("readyz")).StatusCode);
        var db = Path.Combine(Gw.DataPath, "devicegate.db");
        using (var holder = new SqliteConnection($"Data Source={db};Pooling=False"))
        {
            holder.Open();
            using var begin = holder.CreateCommand();
            begin.CommandText = "BEGIN EXCLUSIVE;";
            begin.ExecuteNonQuery();
            using var locked = await anonymous.GetAsync("readyz");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, locked.StatusCode);
            Assert.Contains("store_unavailable", await locked.Content.ReadAsStringAsync());
            Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("healthz")).StatusCode);
            using var rollback = holder.CreateCommand();
            rollback.CommandText = "ROLLBACK;";
            rollback.ExecuteNonQuery();
        }
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("readyz")).StatusCode);
    }

    [Fact]
    public async Task Readiness_says_draining_during_shutdown()
    {
        var gw = await TestGateway.StartAsync();
        using var device = await gw.ConnectAsync("drain-me");
        using var anonymous = new HttpClient { BaseAddress = gw.BaseUri };
        var stopping = gw.App.StopAsync();
        // While the device is being closed, the node is already not ready.
        var ready = await anonymous.GetAsync("readyz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        Assert.Equal((1001, "shutdown"), await device.ReceiveCloseAsync());
        await stopping;
        await gw.DisposeAsync();
    }

    [Fact]
    public async Task The_openapi_document_describes_every_api_route_and_docs_are_served()
    {
        using var anonymous = new HttpClient { BaseAddress = Gw.BaseUri };
        using var doc = JsonDocument.Parse(await anonymous.GetStringAsync("openapi/v1.json"));
        var paths = doc.RootElement.GetProperty("paths");
        var routes = Gw.App.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .Where(e => e.RoutePattern.RawText?.StartsWith("/api", StringComparison.Ordinal) == true)
            .SelectMany(e => (e.Metadata.GetMetadata<Microsoft.AspNetCore.Routing.HttpMethodMetadata>()?.HttpMethods ?? []).Select(m => (Path: e.RoutePattern.RawText!, Method: m)))
            .ToList();
        Assert.True(routes.Count >= 15, $"only {routes.Count} api routes found");
        foreach (var (path, method) in routes)
        {
            Assert.True(paths.TryGetProperty(path, out var item), $"{path} missing from the OpenAPI document");
            Assert.True(item.TryGetProperty(method.ToLowerInvariant(), out var operation), $"{method} {path} missing");
            Assert.True(operation.GetProperty("responses").EnumerateObject().Any(), $"{method} {path} has no responses");
        }
        using var docs = await new HttpClient(new HttpClientHandler { AllowAutoRedirect = true }) { BaseAddress = Gw.BaseUri }.GetAsync("docs");
        Assert.Equal(HttpStatusCode.OK, docs.StatusCode);
        Assert.Contains("html", docs.Content.Headers.ContentType?.MediaType);
    }
}
