using System.Net.Sockets;
using System.Text;
using DeviceGate.Client;
using DeviceGate.Events;
using DeviceGate.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace DeviceGate.Tests.Functional;

/// <summary>The event stream against hostile devices and stalled readers (issue 13): one line per event, bounded in bytes.</summary>
public sealed class EventStreamHardeningTests
{
    private static async Task<string> ScrapeAsync(TestGateway gw)
    {
        using var anonymous = new HttpClient { BaseAddress = gw.BaseUri };
        return await anonymous.GetStringAsync("metrics");
    }

    [Fact]
    public async Task A_device_s_json_with_newlines_stays_one_event_and_the_sdk_reads_it()
    {
        await using var gw = await TestGateway.StartAsync();
        await using var sse = await SseClient.OpenAsync(gw.Api, "api/events?types=message");
        var client = new GatewayClient(gw.Api);
        using var cts = new CancellationTokenSource(Timeouts.Default);
        await using var events = client.EventsAsync(types: "message", ct: cts.Token).GetAsyncEnumerator(cts.Token);
        var first = events.MoveNextAsync();
        var hub = gw.App.Services.GetRequiredService<EventHub>();
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(hub.SubscriberCount == 2), "the SDK's stream is subscribed");

        using var device = await gw.ConnectEnvelopeAsync("multiline");
        await device.SendTextAsync("{\"type\":\"send\",\"to\":\"server\",\"data\":{\n\"a\" :\r\n [1,\n 2],\n\"s\": \"two\\nlines\"\n}}");
        var e = await sse.NextAsync();
        Assert.Equal("""{"a":[1,2],"s":"two\nlines"}""", e.Data.GetProperty("data").GetRawText());
        Assert.True(await first);
        Assert.Equal("two\nlines", events.Current.Json.GetProperty("data").GetProperty("s").GetString());
    }

    [Fact]
    public async Task Events_are_not_inflated_by_html_escaping()
    {
        await using var gw = await TestGateway.StartAsync();
        await using var sse = await SseClient.OpenAsync(gw.Api, "api/events?types=message");
        using var device = await gw.ConnectAsync("angle");
        await device.SendTextAsync(new string('<', 60_000) + "é&>");
        var raw = await sse.NextRawAsync();
        Assert.InRange(Encoding.UTF8.GetByteCount(raw), 60_000, 60_400);
    }

    [Fact]
    public async Task The_replay_buffer_is_bounded_in_bytes()
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string> { ["DeviceGate:Events:ReplayBufferBytes"] = "20000" });
        await using var sse = await SseClient.OpenAsync(gw.Api, "api/events?types=message");
        using var device = await gw.ConnectAsync("bulky");
        var ids = new List<long>();
        for (var i = 0; i < 10; i++)
        {
            await device.SendTextAsync(i + new string('x', 5000));
            ids.Add((await sse.NextAsync()).Id);
        }
        // About three 5 KB events fit in 20,000 bytes: resuming from the first one is a reset, from the 8th a replay.
        await using (var old = await SseClient.OpenAsync(gw.Api, "api/events", lastEventId: ids[0]))
        {
            Assert.Equal("reset", (await old.NextAsync()).Event);
        }
        await using var recent = await SseClient.OpenAsync(gw.Api, "api/events", lastEventId: ids[7]);
        Assert.Equal(ids[8], (await recent.NextAsync()).Id);
        Assert.Equal(ids[9], (await recent.NextAsync()).Id);
    }

    [Theory]
    [InlineData("behind", "200000", "00:05:00")]
    [InlineData("stalled", "1000000000", "00:00:01")]
    public async Task A_reader_that_stops_reading_is_disconnected(string reason, string subscriberBytes, string stalledTimeout)
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string>
        {
            ["DeviceGate:Limits:DeviceMessagesPerSecond"] = "100000",
            ["DeviceGate:Limits:DeviceMessagesBurst"] = "100000",
            ["DeviceGate:Events:SubscriberBufferBytes"] = subscriberBytes,
            ["DeviceGate:Events:StalledReaderTimeout"] = stalledTimeout,
        });
        // A raw HTTP client that asks for the stream and never reads a byte of it.
        using var stalled = new TcpClient { ReceiveBufferSize = 4096 };
        await stalled.ConnectAsync(gw.BaseUri.Host, gw.BaseUri.Port);
        await stalled.GetStream().WriteAsync(Encoding.ASCII.GetBytes(
            $"GET /api/events HTTP/1.1\r\nHost: {gw.BaseUri.Authority}\r\nAuthorization: Bearer {TestGateway.ApiKey}\r\n\r\n"));
        var hub = gw.App.Services.GetRequiredService<EventHub>();
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(hub.SubscriberCount == 1), "the stalled reader is subscribed");
        using var device = await gw.ConnectAsync("firehose");
        var chunk = new string('y', 60_000);
        var series = $"devicegate_event_readers_dropped_total{{reason=\"{reason}\"}}";
        await ApiExtensions.EventuallyAsync(async () =>
        {
            // Keep producing (within the device's rate) until the server gives up on the reader.
            for (var i = 0; i < 20; i++) await device.SendTextAsync(chunk);
            return PrometheusText.Value(await ScrapeAsync(gw), series) >= 1;
        }, $"reader dropped ({reason})");
    }

    [Fact]
    public async Task The_dotnet_sdk_skips_an_unreadable_event_and_keeps_its_resume_position()
    {
        // A stand-in server that sends a broken event between two good ones, then ends the stream; the SDK must
        // yield both good ones and come back with Last-Event-ID of the last.
        var lastEventIds = new List<string>();
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        await using var app = builder.Build();
        app.MapGet("/api/events", async (HttpContext c) =>
        {
            lock (lastEventIds) lastEventIds.Add(c.Request.Headers["Last-Event-ID"].ToString());
            c.Response.ContentType = "text/event-stream";
            if (lastEventIds.Count > 1)
            {
                await Task.Delay(Timeout.Infinite, c.RequestAborted).ContinueWith(_ => { });
                return;
            }
            await c.Response.WriteAsync("id: 1\nevent: message\ndata: {\"seq\":1,\"type\":\"message\",\"device\":\"a\"}\n\n"
                + "id: 2\nevent: message\ndata: {\"seq\":2,\"type\":\"mess\ndata: age\"\n\n"
                + "id: 3\nevent: message\ndata: {\"seq\":3,\"type\":\"message\",\"device\":\"b\"}\n\n");
        });
        await app.StartAsync();
        using var http = new HttpClient { BaseAddress = new Uri(app.Urls.First() + "/") };
        var client = new GatewayClient(http);
        using var cts = new CancellationTokenSource(Timeouts.Default);
        var got = new List<long>();
        var reading = Task.Run(async () =>
        {
            await foreach (var e in client.EventsAsync(ct: cts.Token)) lock (got) got.Add(e.Seq);
        });
        // The stream ended after event 3; the SDK reconnects and resumes after it.
        await ApiExtensions.EventuallyAsync(() => { lock (lastEventIds) return Task.FromResult(lastEventIds.Count >= 2); }, "reconnected");
        lock (lastEventIds) Assert.Equal(["", "3"], lastEventIds.Take(2));
        lock (got) Assert.Equal([1L, 3L], got);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => reading);
        await app.StopAsync();
    }
}
