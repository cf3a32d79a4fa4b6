using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using DeviceGate.Events;
using DeviceGate.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace DeviceGate.Tests.Functional;

/// <summary>What a hostile or buggy device found (issue 13): zombies, strings that do not decode, acks and bytes counted twice, log injection.</summary>
public sealed class HostileDeviceTests : GatewayTest
{
    // The six characters \ud800: valid JSON syntax, but no valid UTF-16 string.
    private const string Lone = "\\ud800";

    private async Task<string> ScrapeAsync()
    {
        using var anonymous = new HttpClient { BaseAddress = Gw.BaseUri };
        return await anonymous.GetStringAsync("metrics");
    }

    private async Task AssertStillOnlineAndReachableAsync(ClientWebSocket device, string id)
    {
        Assert.True((await Gw.Api.GetJsonAsync($"api/devices/{id}")).GetProperty("online").GetBoolean());
        await device.SendTextAsync("""{"type":"send","to":"server","data":1,"ref":"alive"}""");
        var sent = await device.ReceiveJsonAsync();
        Assert.Equal(("sent", "alive"), (sent.Str("type"), sent.Str("ref")));
    }

    [Theory]
    [InlineData("{\"type\":\"" + Lone + "\"}")]
    [InlineData("{\"type\":\"send\",\"to\":\"" + Lone + "\",\"data\":1}")]
    [InlineData("{\"type\":\"send\",\"to\":\"server\",\"data\":1,\"ref\":\"" + Lone + "\"}")]
    [InlineData("{\"type\":\"ack\",\"id\":\"" + Lone + "\"}")]
    [InlineData("{\"type\":\"join\",\"group\":\"" + Lone + "\"}")]
    [InlineData("{\"type\":\"send\",\"to\":\"raw-target\",\"data\":\"x" + Lone + "y\"}")]
    public async Task A_lone_surrogate_in_any_string_is_an_invalid_field_and_the_connection_stays(string envelope)
    {
        using var raw = await Gw.ConnectAsync("raw-target");
        using var device = await Gw.ConnectEnvelopeAsync("surrogate");
        await device.SendTextAsync(envelope);
        var error = await device.ReceiveJsonAsync();
        Assert.Equal(("error", "invalid_field"), (error.Str("type"), error.Str("code")));
        await AssertStillOnlineAndReachableAsync(device, "surrogate");
        using var send = await Gw.Api.PostTextAsync("api/devices/surrogate/messages", "still reached");
        Assert.Equal(HttpStatusCode.Accepted, send.StatusCode);
        Assert.Equal("still reached", (await device.ReceiveJsonAsync()).Str("data"));
    }

    [Fact]
    public async Task A_lone_surrogate_in_a_batch_item_is_an_item_level_400()
    {
        var body = "[{\"device\":\"b1\",\"text\":\"a" + Lone + "\"},{\"device\":\"" + Lone + "\",\"text\":\"x\"},{\"device\":\"b1\",\"text\":\"ok\",\"idempotencyKey\":\"" + Lone + "\"}]";
        using var response = await Gw.Api.PostAsync("api/messages/batch", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var results = (await response.JsonAsync()).GetProperty("results").EnumerateArray().ToList();
        Assert.Equal(3, results.Count);
        Assert.All(results, r => Assert.Equal(("invalid_item", 400), (r.Str("type"), r.GetProperty("status").GetInt32())));
    }

    [Fact]
    public async Task A_reply_whose_error_code_does_not_decode_still_answers_the_rpc()
    {
        using var device = await Gw.ConnectEnvelopeAsync("rpc-surrogate");
        var call = Gw.Api.PostAsync("api/devices/rpc-surrogate/rpc?timeout=10", new StringContent("{}", Encoding.UTF8, "application/json"));
        var rpc = await device.ReceiveJsonAsync();
        await device.SendTextAsync("{\"type\":\"reply\",\"id\":\"" + rpc.Str("id") + "\",\"error\":{\"code\":\"" + Lone + "\",\"message\":\"m\"}}");
        using var answer = await call;
        Assert.Equal(HttpStatusCode.BadGateway, answer.StatusCode);
        Assert.Equal("error", (await answer.JsonAsync()).Str("code"));
        await AssertStillOnlineAndReachableAsync(device, "rpc-surrogate");
    }

    [Fact]
    public async Task Whatever_a_handler_throws_the_device_is_torn_down_and_closed_with_1011_logged_once()
    {
        // A reader whose filter throws on message events makes the raw device's read loop fail inside its handler:
        // any bug of that kind must end in a clean teardown, not a zombie that still looks online.
        var hub = Gw.App.Services.GetRequiredService<EventHub>();
        using var poisoned = hub.Subscribe(null, 100, e => e.Type == EventTypes.Message ? throw new InvalidOperationException("handler bug") : false);
        await using var events = await SseClient.OpenAsync(Gw.Api, "api/events?types=disconnected");
        using var device = await Gw.ConnectAsync("doomed");
        using var other = await Gw.ConnectAsync("bystander");
        await device.SendTextAsync("boom");
        Assert.Equal((1011, "internal_error"), await device.ReceiveCloseAsync());

        var gone = await events.NextWhereAsync(e => e.Data.Str("device") == "doomed");
        Assert.Equal(1011, gone.Data.GetProperty("code").GetInt32());
        Assert.Equal("server", gone.Data.Str("by"));
        Assert.False((await Gw.Api.GetJsonAsync("api/devices/doomed")).GetProperty("online").GetBoolean());
        using (var send = await Gw.Api.PostTextAsync("api/devices/doomed/messages", "to nobody")) Assert.Equal(HttpStatusCode.NotFound, send.StatusCode);
        var metrics = await ScrapeAsync();
        Assert.Equal(1, PrometheusText.Value(metrics, "devicegate_connected_devices"));
        Assert.Equal(1, PrometheusText.Value(metrics, "devicegate_read_loop_faults_total"));
        Assert.Single(Gw.Logs.Lines, l => l.Contains("[1005]", StringComparison.Ordinal));

        using var still = await Gw.Api.PostTextAsync("api/devices/bystander/messages", "unaffected");
        Assert.Equal("unaffected", await other.ReceiveTextAsync());
    }

    [Fact]
    public async Task An_ack_repeated_300_times_counts_and_announces_once()
    {
        using var device = await Gw.ConnectEnvelopeAsync("acker");
        await using var events = await SseClient.OpenAsync(Gw.Api, "api/events?types=acked");
        using var send = await Gw.Api.PostTextAsync("api/devices/acker/messages", "once");
        var id = (await send.JsonAsync()).Str("id");
        Assert.Equal(id, (await device.ReceiveJsonAsync()).Str("id"));
        for (var i = 0; i < 300; i++) await device.SendTextAsync($"{{\"type\":\"ack\",\"id\":\"{id}\"}}");
        // A marker ack of another message after the repeats: once its event arrives, every repeat was handled.
        using var marker = await Gw.Api.PostTextAsync("api/devices/acker/messages", "marker");
        var markerId = (await marker.JsonAsync()).Str("id");
        await device.ReceiveJsonAsync();
        await device.SendTextAsync($"{{\"type\":\"ack\",\"id\":\"{markerId}\"}}");
        Assert.Equal(id, (await events.NextAsync()).Data.Str("id"));
        Assert.Equal(markerId, (await events.NextAsync()).Data.Str("id"));
        Assert.Equal(2, PrometheusText.Value(await ScrapeAsync(), "devicegate_acks_total"));
        Assert.Equal("acked", (await Gw.Api.GetJsonAsync($"api/messages/{id}")).Str("status"));
    }

    [Fact]
    public async Task Inbound_bytes_are_counted_exactly_once_for_raw_and_envelope_devices()
    {
        using var raw = await Gw.ConnectAsync("bytes-raw");
        using var envelope = await Gw.ConnectEnvelopeAsync("bytes-env");
        await using var events = await SseClient.OpenAsync(Gw.Api, "api/events?types=message");
        await raw.SendTextAsync("12345");
        const string sent = """{"type":"send","to":"server","data":"abc"}""";
        await envelope.SendTextAsync(sent);
        await events.NextAsync();
        await events.NextAsync();
        Assert.Equal(5 + Encoding.UTF8.GetByteCount(sent), PrometheusText.Value(await ScrapeAsync(), "devicegate_bytes_in_total"));
    }

    [Fact]
    public async Task A_close_reason_with_control_characters_is_escaped_in_the_log_and_the_event_says_who_closed()
    {
        await using var events = await SseClient.OpenAsync(Gw.Api, "api/events?types=disconnected");
        using var device = await Gw.ConnectAsync("injector");
        const string reason = "bye\r\n12:00:00.000 info: forged line\u001b[31m";
        await device.CloseAsync((WebSocketCloseStatus)4001, reason, new CancellationTokenSource(Timeouts.Default).Token);
        var gone = await events.NextWhereAsync(e => e.Data.Str("device") == "injector");
        Assert.Equal(("device", 4001, reason), (gone.Data.Str("by"), gone.Data.GetProperty("code").GetInt32(), gone.Data.Str("reason")));
        var line = Assert.Single(Gw.Logs.Lines, l => l.Contains("[1001]", StringComparison.Ordinal) && l.Contains("injector", StringComparison.Ordinal));
        Assert.DoesNotContain('\r', line);
        Assert.DoesNotContain('\n', line.TrimEnd());
        Assert.DoesNotContain('\u001b', line);
        Assert.Contains("\\u000d\\u000a", line, StringComparison.Ordinal);
    }
}
