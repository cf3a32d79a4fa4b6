using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using DeviceGate.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace DeviceGate.Tests.Functional;

/// <summary>
/// DeviceGate:Telemetry:PropagateToDevices (issue 17): W3C trace context in envelopes, both ways, and on to the
/// event stream and webhooks. These hold whether or not anything records spans (in this process another test's
/// tracer may be listening), so they check trace ids, which pass through either way.
/// </summary>
public sealed class TracePropagationTests
{
    private static string NewTraceParent(out ActivityTraceId trace)
    {
        trace = ActivityTraceId.CreateRandom();
        return $"00-{trace}-{ActivitySpanId.CreateRandom()}-01";
    }

    /// <summary>A client that sends the traceparent header it is given (the default handler in this process would put its own).</summary>
    private static HttpClient Api(TestGateway gw) => ApiExtensions.Client(gw.BaseUri, TestGateway.ApiKey, new SocketsHttpHandler { ActivityHeadersPropagator = null });

    private static async Task<HttpStatusCode> PostAsync(HttpClient http, string path, string body, string traceParent, string contentType = "text/plain")
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, System.Text.Encoding.UTF8, contentType) };
        request.Headers.Add("traceparent", traceParent);
        using var response = await http.SendAsync(request);
        return response.StatusCode;
    }

    private static ActivityTraceId TraceOf(JsonElement envelope)
    {
        Assert.True(envelope.TryGetProperty("traceparent", out var tp), $"no traceparent in {envelope}");
        Assert.True(ActivityContext.TryParse(tp.GetString(), null, out var context), $"not a W3C traceparent: {tp}");
        return context.TraceId;
    }

    [Fact]
    public async Task Off_by_default_envelopes_carry_no_traceparent_and_one_sent_by_a_device_is_not_read()
    {
        await using var gw = await TestGateway.StartAsync();
        using var http = Api(gw);
        using var device = await gw.ConnectEnvelopeAsync("tp-off");
        await using var sse = await SseClient.OpenAsync(gw.Api, "api/events?types=message&device=tp-off");

        Assert.Equal(HttpStatusCode.Accepted, await PostAsync(http, "api/devices/tp-off/messages", "hello", NewTraceParent(out _)));
        var message = await device.ReceiveJsonAsync();
        Assert.Equal("message", message.Str("type"));
        Assert.False(message.TryGetProperty("traceparent", out _));

        var rpc = RpcAsync(http, "tp-off", NewTraceParent(out _));
        var request = await device.ReceiveJsonAsync();
        Assert.Equal("rpc", request.Str("type"));
        Assert.False(request.TryGetProperty("traceparent", out _));
        await device.SendJsonAsync(new { type = "reply", id = request.Str("id"), data = 1 });
        Assert.Equal(HttpStatusCode.OK, await rpc);

        // Not read when off: even a malformed one is no error.
        await device.SendJsonAsync(new { type = "send", to = "server", data = 1, traceparent = "not-a-trace", @ref = "r1" });
        var sent = await device.ReceiveJsonAsync();
        Assert.Equal(("sent", "r1"), (sent.Str("type"), sent.Str("ref")));
        var e = await sse.NextAsync();
        Assert.False(e.Data.TryGetProperty("traceparent", out _));
    }

    private static async Task<HttpStatusCode> RpcAsync(HttpClient http, string device, string traceParent) =>
        await PostAsync(http, $"api/devices/{device}/rpc?timeout=10", "{}", traceParent, "application/json");

    [Fact]
    public async Task On_messages_and_rpcs_carry_the_callers_trace_and_a_devices_traceparent_continues_to_devices_events_and_webhooks()
    {
        var hooks = new BlockingCollection<JsonElement>();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        await using var receiver = builder.Build();
        receiver.MapPost("/hook", async (HttpRequest request) =>
        {
            using var doc = await JsonDocument.ParseAsync(request.Body);
            foreach (var e in doc.RootElement.EnumerateArray()) hooks.Add(e.Clone());
            return Results.Ok();
        });
        await receiver.StartAsync();

        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string>
        {
            ["DeviceGate:Telemetry:PropagateToDevices"] = "true",
            ["DeviceGate:Webhooks:Url"] = receiver.Urls.First() + "/hook",
            ["DeviceGate:Webhooks:Secret"] = "webhook-secret-0123456789",
        });
        using var http = Api(gw);
        using var a = await gw.ConnectEnvelopeAsync("tp-a");
        using var b = await gw.ConnectEnvelopeAsync("tp-b");
        await using var sse = await SseClient.OpenAsync(gw.Api, "api/events?types=message&device=tp-a");

        // From the API, live and durable: the caller's trace.
        Assert.Equal(HttpStatusCode.Accepted, await PostAsync(http, "api/devices/tp-b/messages", "live", NewTraceParent(out var apiTrace)));
        Assert.Equal(apiTrace, TraceOf(await b.ReceiveJsonAsync()));
        Assert.Equal(HttpStatusCode.Accepted, await PostAsync(http, "api/devices/tp-b/messages?ttl=60", "stored", NewTraceParent(out var durableTrace)));
        var stored = await b.ReceiveJsonAsync();
        Assert.Equal(durableTrace, TraceOf(stored));
        await b.SendJsonAsync(new { type = "ack", id = stored.Str("id") });

        var rpc = RpcAsync(http, "tp-b", NewTraceParent(out var rpcTrace));
        var request = await b.ReceiveJsonAsync();
        Assert.Equal(("rpc", rpcTrace), (request.Str("type"), TraceOf(request)));
        await b.SendJsonAsync(new { type = "reply", id = request.Str("id"), data = 1 });
        Assert.Equal(HttpStatusCode.OK, await rpc);

        // From a device: to another device (live and with a ttl), to a group, and to the server.
        await a.SendJsonAsync(new { type = "send", to = "tp-b", data = 1, traceparent = NewTraceParent(out var deviceTrace) });
        Assert.Equal(deviceTrace, TraceOf(await b.ReceiveJsonAsync()));
        await a.SendJsonAsync(new { type = "send", to = "tp-b", data = 2, ttl = 60, traceparent = NewTraceParent(out var deviceDurableTrace) });
        var fromA = await b.ReceiveJsonAsync();
        Assert.Equal(deviceDurableTrace, TraceOf(fromA));
        await b.SendJsonAsync(new { type = "ack", id = fromA.Str("id") });
        using (var join = await gw.Api.PutAsync("api/groups/tp-room/devices/tp-b", null)) Assert.True(join.IsSuccessStatusCode);
        await a.SendJsonAsync(new { type = "publish", group = "tp-room", data = 3, traceparent = NewTraceParent(out var publishTrace) });
        var published = await b.ReceiveJsonAsync();
        Assert.Equal(("tp-room", publishTrace), (published.Str("group"), TraceOf(published)));

        await a.SendJsonAsync(new { type = "send", to = "server", data = new { t = 21 }, traceparent = NewTraceParent(out var eventTrace) });
        var e = await sse.NextAsync();
        Assert.Equal(eventTrace, TraceOf(e.Data));
        JsonElement hooked;
        do
        {
            Assert.True(hooks.TryTake(out hooked, Timeouts.Default), "no webhook with the message event arrived");
        }
        while (hooked.Str("type") != "message");
        Assert.Equal(eventTrace, TraceOf(hooked));

        // A malformed one is refused (the envelope is not sent); the connection stays.
        foreach (object bad in new object[] { "00-xyz", 42, "00-" + new string('0', 32) + "-" + new string('1', 16) + "-01", new string('a', 300) })
        {
            await a.SendJsonAsync(new { type = "send", to = "tp-b", data = 4, traceparent = bad, @ref = "bad" });
            var error = await a.ReceiveJsonAsync();
            Assert.Equal(("error", "invalid_field", "bad"), (error.Str("type"), error.Str("code"), error.Str("ref")));
            Assert.Contains("traceparent", error.Str("message"));
        }
        await a.SendJsonAsync(new { type = "send", to = "tp-b", data = 5, @ref = "ok" });
        Assert.Equal("sent", (await a.ReceiveJsonAsync()).Str("type"));
        Assert.Equal(5, (await b.ReceiveJsonAsync()).GetProperty("data").GetInt32());
        await receiver.StopAsync();
    }
}
