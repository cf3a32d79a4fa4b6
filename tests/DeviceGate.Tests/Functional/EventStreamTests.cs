using System.Net;
using System.Net.WebSockets;
using System.Text;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

public sealed class EventStreamTests : GatewayTest
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["DeviceGate:Events:ReplayBuffer"] = "50",
        ["DeviceGate:Events:KeepAliveInterval"] = "00:00:00.200",
    };

    [Fact]
    public async Task Connected_message_and_disconnected_arrive_in_order_for_one_device()
    {
        await using var sse = await SseClient.OpenAsync(Gw.Api, "api/events?device=ev-1");
        using (var device = await Gw.ConnectAsync("ev-1"))
        {
            await device.SendTextAsync("temperature=21");
            await device.SendAsync(new byte[] { 0, 255 }, WebSocketMessageType.Binary, true, default);
            await device.CloseCleanlyAsync();
        }
        var connected = await sse.NextAsync();
        Assert.Equal("connected", connected.Event);
        Assert.Equal(("connected", "ev-1"), (connected.Data.Str("type"), connected.Data.Str("device")));
        Assert.EndsWith("Z", connected.Data.Str("at"));
        var text = await sse.NextAsync();
        Assert.Equal(("message", "temperature=21"), (text.Event, text.Data.Str("data")));
        var binary = await sse.NextAsync();
        Assert.Equal(new byte[] { 0, 255 }, Convert.FromBase64String(binary.Data.Str("dataBase64")));
        var disconnected = await sse.NextAsync();
        Assert.Equal("disconnected", disconnected.Event);
        Assert.Equal(1000, disconnected.Data.GetProperty("code").GetInt32());
        Assert.True(connected.Id < text.Id && text.Id < binary.Id && binary.Id < disconnected.Id);
    }

    [Fact]
    public async Task An_envelope_send_to_server_is_a_message_event_with_json_data()
    {
        await using var sse = await SseClient.OpenAsync(Gw.Api, "api/events?types=message");
        using var device = await Gw.ConnectEnvelopeAsync("ev-env");
        await device.SendJsonAsync(new { type = "send", to = "server", data = new { level = 3 } });
        var e = await sse.NextAsync();
        Assert.Equal(("message", "ev-env"), (e.Event, e.Data.Str("device")));
        Assert.Equal(3, e.Data.GetProperty("data").GetProperty("level").GetInt32());
    }

    [Fact]
    public async Task Type_filter_leaves_out_other_types()
    {
        await using var sse = await SseClient.OpenAsync(Gw.Api, "api/events?types=disconnected");
        using (var device = await Gw.ConnectAsync("ev-f"))
        {
            await device.SendTextAsync("not wanted");
            await device.CloseCleanlyAsync();
        }
        var e = await sse.NextAsync();
        Assert.Equal(("disconnected", "ev-f"), (e.Event, e.Data.Str("device")));
        Assert.Equal(HttpStatusCode.BadRequest, (await Gw.Api.GetAsync("api/events?types=bogus")).StatusCode);
    }

    [Fact]
    public async Task A_reader_resumes_with_last_event_id_and_gets_a_reset_when_events_are_gone()
    {
        long lastSeen;
        using var device = await Gw.ConnectAsync("ev-r");
        await using (var sse = await SseClient.OpenAsync(Gw.Api, "api/events?device=ev-r&types=message"))
        {
            await device.SendTextAsync("one");
            lastSeen = (await sse.NextAsync()).Id;
        }
        await device.SendTextAsync("two");
        await device.SendTextAsync("three");
        await using (var resumed = await SseClient.OpenAsync(Gw.Api, "api/events?device=ev-r&types=message", lastSeen))
        {
            Assert.Equal("two", (await resumed.NextAsync()).Data.Str("data"));
            Assert.Equal("three", (await resumed.NextAsync()).Data.Str("data"));
        }
        // The replay buffer holds 50 events: after 60 more, resuming from the old id can only say "reset".
        for (var i = 0; i < 60; i++) await device.SendTextAsync($"filler {i}");
        await using (var probe = await SseClient.OpenAsync(Gw.Api, "api/events?device=ev-r&types=message"))
        {
            await device.SendTextAsync("marker");
            await probe.NextWhereAsync(e => e.Data.Str("data") == "marker");
        }
        await using var late = await SseClient.OpenAsync(Gw.Api, "api/events?device=ev-r&types=message", lastSeen);
        var reset = await late.NextAsync();
        Assert.Equal("reset", reset.Event);
    }

    [Fact]
    public async Task Event_ids_keep_increasing_across_a_restart_and_an_id_from_before_it_gets_a_reset()
    {
        var dataPath = Path.Combine(Path.GetTempPath(), "devicegate-ev-restart-" + Guid.NewGuid().ToString("N"));
        long before;
        await using (var first = await TestGateway.StartAsync(dataPath: dataPath))
        {
            await using var sse = await SseClient.OpenAsync(first.Api, "api/events?device=ev-life");
            using var device = await first.ConnectAsync("ev-life");
            before = (await sse.NextAsync()).Id;
        }
        await using var second = await TestGateway.StartAsync(dataPath: dataPath);
        // Readers and webhook receivers dedupe by id: a restarted node must not hand out ids it used before.
        await using (var sse = await SseClient.OpenAsync(second.Api, "api/events?device=ev-life"))
        {
            using var device = await second.ConnectAsync("ev-life");
            Assert.True((await sse.NextAsync()).Id > before);
        }
        // The events between the restart and now were never stored for that reader: it must resynchronise.
        await using var resumed = await SseClient.OpenAsync(second.Api, "api/events?device=ev-life", before);
        Assert.Equal("reset", (await resumed.NextAsync()).Event);
        Directory.Delete(dataPath, recursive: true);
    }

    [Fact]
    public async Task Idle_streams_get_keep_alive_comments()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "api/events?device=nobody");
        using var response = await Gw.Api.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        using var cts = new CancellationTokenSource(Timeouts.Default);
        string? line;
        do line = await reader.ReadLineAsync(cts.Token);
        while (line != ": keep-alive");
    }

    [Fact]
    public async Task The_event_stream_needs_an_api_key()
    {
        using var anonymous = new HttpClient { BaseAddress = Gw.BaseUri };
        Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.GetAsync("api/events")).StatusCode);
    }
}

public sealed class StalledEventReaderTests : GatewayTest
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["DeviceGate:Events:SubscriberBuffer"] = "20",
    };

    [Fact]
    public async Task A_stalled_reader_is_dropped_and_never_slows_delivery()
    {
        // Opened and never read: once the socket buffers fill, its queue overflows and it is cut off.
        await using var stalled = await SseClient.OpenAsync(Gw.Api);
        using var chatty = await Gw.ConnectAsync("chatty");
        using var receiver = await Gw.ConnectAsync("receiver");
        var big = Encoding.UTF8.GetBytes(new string('x', 60_000));
        for (var i = 0; i < 300; i++)
        {
            await chatty.SendAsync(big, WebSocketMessageType.Text, true, new CancellationTokenSource(Timeouts.Default).Token);
            if (i % 30 == 0)
            {
                Assert.Equal(HttpStatusCode.Accepted, (await Gw.Api.PostTextAsync("api/devices/receiver/messages", $"m{i}")).StatusCode);
                Assert.Equal($"m{i}", await receiver.ReceiveTextAsync());
            }
        }
        // Draining the stalled stream now ends (the server aborted it) instead of going on forever.
        var stream = await stalled.Response.Content.ReadAsStreamAsync();
        var buffer = new byte[1 << 16];
        using var cts = new CancellationTokenSource(Timeouts.Default);
        await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            while (await stream.ReadAsync(buffer, cts.Token) > 0)
            {
            }
            throw new EndOfStreamException();
        });
        Assert.False(cts.IsCancellationRequested, "the stalled stream was never dropped");
    }
}
