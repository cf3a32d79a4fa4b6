using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using DeviceGate.Hosting;
using DeviceGate.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using DeviceGate.Diagnostics;

namespace DeviceGate.Tests.Functional;

public sealed class RpcTests : GatewayTest
{
    /// <summary>Answers every rpc the device receives with <paramref name="answer"/>(request data).</summary>
    private static Task ServeRpcsAsync(WebSocket device, Func<JsonElement, object> answer) => Task.Run(async () =>
    {
        try
        {
            while (device.State == WebSocketState.Open)
            {
                var rpc = await device.ReceiveJsonAsync(TimeSpan.FromMinutes(1));
                if (rpc.Str("type") != "rpc") continue;
                var reply = answer(rpc.GetProperty("data"));
                await device.SendTextAsync(JsonSerializer.Serialize(reply).Replace("\"__ID__\"", JsonSerializer.Serialize(rpc.Str("id"))));
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or JsonException)
        {
        }
    });

    [Fact]
    public async Task An_rpc_returns_the_device_reply_data_as_the_body()
    {
        using var device = await Gw.ConnectEnvelopeAsync("rpc-1");
        var serving = ServeRpcsAsync(device, data => new { type = "reply", id = "__ID__", data = new { echoed = data, ok = true } });
        using var response = await Gw.Api.PostBytesAsync("api/devices/rpc-1/rpc?timeout=5", "{\"cmd\":\"status\"}"u8.ToArray(), "application/json");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("{\"echoed\":{\"cmd\":\"status\"},\"ok\":true}", await response.Content.ReadAsStringAsync());

        using var text = await Gw.Api.PostTextAsync("api/devices/rpc-1/rpc", "plain");
        Assert.Equal("{\"echoed\":\"plain\",\"ok\":true}", await text.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task An_rpc_without_a_reply_times_out_with_504_and_a_late_reply_is_dropped()
    {
        using var device = await Gw.ConnectEnvelopeAsync("rpc-slow");
        var started = DateTime.UtcNow;
        var call = Gw.Api.PostTextAsync("api/devices/rpc-slow/rpc?timeout=0.5", "hello?");
        var rpc = await device.ReceiveJsonAsync();
        Assert.Equal("rpc", rpc.Str("type"));
        Assert.Equal("hello?", rpc.Str("data"));
        using var response = await call;
        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.True(DateTime.UtcNow - started >= TimeSpan.FromSeconds(0.45));

        var metrics = Gw.App.Services.GetRequiredService<GatewayMetrics>();
        await device.SendJsonAsync(new { type = "reply", id = rpc.Str("id"), data = "too late" });
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(metrics.Value(metrics.LateReplies) == 1), "late reply counted");

        // The connection is fine and the next rpc works.
        var serving = ServeRpcsAsync(device, _ => new { type = "reply", id = "__ID__", data = 42 });
        using var next = await Gw.Api.PostTextAsync("api/devices/rpc-slow/rpc?timeout=5", "again");
        Assert.Equal("42", await next.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task A_device_error_is_a_502_with_its_code_and_message()
    {
        using var device = await Gw.ConnectEnvelopeAsync("rpc-err");
        var serving = ServeRpcsAsync(device, _ => new { type = "reply", id = "__ID__", error = new { code = "busy", message = "motor running" } });
        using var response = await Gw.Api.PostTextAsync("api/devices/rpc-err/rpc", "go");
        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        var problem = await response.JsonAsync();
        Assert.Equal("busy", problem.Str("code"));
        Assert.Equal("motor running", problem.Str("message"));
    }

    [Fact]
    public async Task Rpc_to_offline_is_404_to_raw_is_409_and_bad_timeouts_are_400()
    {
        Assert.Equal(HttpStatusCode.NotFound, (await Gw.Api.PostTextAsync("api/devices/nobody/rpc", "x")).StatusCode);
        using var raw = await Gw.ConnectAsync("rpc-raw");
        Assert.Equal(HttpStatusCode.Conflict, (await Gw.Api.PostTextAsync("api/devices/rpc-raw/rpc", "x")).StatusCode);
        using var env = await Gw.ConnectEnvelopeAsync("rpc-t");
        foreach (var t in new[] { "0", "-1", "61", "abc", "NaN" })
        {
            Assert.Equal(HttpStatusCode.BadRequest, (await Gw.Api.PostTextAsync($"api/devices/rpc-t/rpc?timeout={t}", "x")).StatusCode);
        }
    }

    [Fact]
    public async Task A_reply_from_another_device_does_not_answer_the_rpc()
    {
        using var target = await Gw.ConnectEnvelopeAsync("rpc-target");
        using var intruder = await Gw.ConnectEnvelopeAsync("rpc-intruder");
        var call = Gw.Api.PostTextAsync("api/devices/rpc-target/rpc?timeout=1", "who?");
        var rpc = await target.ReceiveJsonAsync();
        await intruder.SendJsonAsync(new { type = "reply", id = rpc.Str("id"), data = "forged" });
        Assert.Equal(HttpStatusCode.GatewayTimeout, (await call).StatusCode);
    }
}
