using System.Net;
using System.Net.WebSockets;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

public sealed class ConnectionLifecycleTests : GatewayTest
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["DeviceGate:Limits:SendQueueMessages"] = "50",
        ["DeviceGate:Limits:SendQueueBytes"] = "262144",
    };

    [Fact]
    public async Task Presence_flips_when_the_device_leaves()
    {
        using var device = await Gw.ConnectAsync("p1");
        var online = await Gw.Api.GetJsonAsync("api/devices/p1");
        Assert.True(online.GetProperty("online").GetBoolean());
        Assert.False(string.IsNullOrEmpty(online.GetProperty("node").GetString()));
        Assert.Equal(0, online.GetProperty("queued").GetInt32());
        var connectedAt = online.GetProperty("connectedAt").GetDateTimeOffset();
        Assert.EndsWith("Z", online.GetProperty("connectedAt").GetString());
        Assert.True(DateTimeOffset.UtcNow - connectedAt < TimeSpan.FromMinutes(1));

        await device.CloseCleanlyAsync();
        var offline = await Gw.Api.GetJsonAsync("api/devices/p1");
        Assert.False(offline.GetProperty("online").GetBoolean());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, offline.GetProperty("connectedAt").ValueKind);
        Assert.Equal(HttpStatusCode.NotFound, (await Gw.Api.PostTextAsync("api/devices/p1/messages", "x")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await Gw.Api.GetAsync("api/devices/never-seen")).StatusCode);
    }

    [Fact]
    public async Task A_newer_connection_replaces_the_older_with_4000()
    {
        using var first = await Gw.ConnectAsync("twin");
        using var second = await Gw.ConnectAsync("twin");
        Assert.Equal((4000, "replaced"), await first.ReceiveCloseAsync());
        await Gw.Api.PostTextAsync("api/devices/twin/messages", "to the newest");
        Assert.Equal("to the newest", await second.ReceiveTextAsync());
        Assert.True((await Gw.Api.GetJsonAsync("api/devices/twin")).GetProperty("online").GetBoolean());
    }

    [Fact]
    public async Task Racing_connects_leave_exactly_one_registered()
    {
        var sockets = await Task.WhenAll(Enumerable.Range(0, 10).Select(_ => Gw.ConnectAsync("racer")));
        var list = await Gw.Api.GetJsonAsync("api/devices");
        Assert.Single(list.GetProperty("devices").EnumerateArray(), d => d.GetProperty("id").GetString() == "racer");

        using var response = await Gw.Api.PostTextAsync("api/devices/racer/messages", "winner");
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        // Every socket either gets the message (exactly one) or is closed with 4000 without having received anything.
        var outcomes = await Task.WhenAll(sockets.Select(s => s.ReceiveMessageAsync()));
        Assert.Single(outcomes, o => o.Type == WebSocketMessageType.Text && o.Text == "winner");
        Assert.Equal(9, outcomes.Count(o => o.Type == WebSocketMessageType.Close));
        Assert.All(sockets.Where(s => s.State != WebSocketState.Open), s => Assert.Equal(4000, (int?)s.CloseStatus));
        foreach (var s in sockets) s.Dispose();
    }

    [Fact]
    public async Task Api_disconnect_closes_with_4001_and_404_when_not_connected()
    {
        using var device = await Gw.ConnectAsync("kick");
        Assert.Equal(HttpStatusCode.NoContent, (await Gw.Api.DeleteAsync("api/devices/kick/connection")).StatusCode);
        Assert.Equal((4001, "disconnected"), await device.ReceiveCloseAsync());
        Assert.False((await Gw.Api.GetJsonAsync("api/devices/kick")).GetProperty("online").GetBoolean());
        Assert.Equal(HttpStatusCode.NotFound, (await Gw.Api.DeleteAsync("api/devices/kick/connection")).StatusCode);
    }

    [Fact]
    public async Task A_slow_consumer_is_closed_with_4002_while_others_keep_receiving()
    {
        using var slow = await Gw.ConnectAsync("slow");
        using var fast = await Gw.ConnectAsync("fast");
        var payload = new byte[16 * 1024];
        var overflowed = false;
        // The slow device never reads: socket buffers fill, then its queue (50 messages / 256 KiB) overflows.
        for (var i = 0; i < 2000 && !overflowed; i++)
        {
            using var toSlow = await Gw.Api.PostBytesAsync("api/devices/slow/messages", payload);
            overflowed = toSlow.StatusCode != HttpStatusCode.Accepted;
            if (i % 100 == 0)
            {
                using var toFast = await Gw.Api.PostTextAsync("api/devices/fast/messages", $"still here {i}");
                Assert.Equal(HttpStatusCode.Accepted, toFast.StatusCode);
                Assert.Equal($"still here {i}", await fast.ReceiveTextAsync());
            }
        }
        Assert.True(overflowed, "the slow device's queue never overflowed");
        Assert.Equal((4002, "slow_consumer"), await slow.ReceiveCloseAsync());
        await Gw.Api.PostTextAsync("api/devices/fast/messages", "after");
        Assert.Equal("after", await fast.ReceiveTextAsync());
    }

    [Fact]
    public async Task A_message_over_the_limit_closes_that_device_with_1009_only()
    {
        using var big = await Gw.ConnectAsync("bigmouth");
        using var other = await Gw.ConnectAsync("bystander");
        await big.SendAsync(new byte[65537], WebSocketMessageType.Binary, true, new CancellationTokenSource(Timeouts.Default).Token);
        Assert.Equal((1009, "too_big"), await big.ReceiveCloseAsync());
        await Gw.Api.PostTextAsync("api/devices/bystander/messages", "fine");
        Assert.Equal("fine", await other.ReceiveTextAsync());
    }

    [Fact]
    public async Task A_message_of_exactly_the_limit_is_accepted()
    {
        using var device = await Gw.ConnectAsync("limit");
        await device.SendAsync(new byte[65536], WebSocketMessageType.Binary, true, new CancellationTokenSource(Timeouts.Default).Token);
        await Gw.Api.PostTextAsync("api/devices/limit/messages", "still open");
        Assert.Equal("still open", await device.ReceiveTextAsync());
    }

    [Fact]
    public async Task Device_list_is_paginated_in_id_order()
    {
        var sockets = await Task.WhenAll(Enumerable.Range(0, 5).Select(i => Gw.ConnectAsync($"page-{i}")));
        var seen = new List<string>();
        string? after = null;
        do
        {
            var page = await Gw.Api.GetJsonAsync("api/devices?limit=2" + (after is null ? "" : "&after=" + after));
            var ids = page.GetProperty("devices").EnumerateArray().Select(d => d.GetProperty("id").GetString()!).ToList();
            Assert.True(ids.Count <= 2);
            Assert.All(page.GetProperty("devices").EnumerateArray(), d => Assert.Equal(TimeSpan.Zero, d.GetProperty("connectedAt").GetDateTimeOffset().Offset));
            seen.AddRange(ids);
            after = page.GetProperty("next").ValueKind == System.Text.Json.JsonValueKind.Null ? null : page.GetProperty("next").GetString();
        }
        while (after is not null);
        Assert.Equal(Enumerable.Range(0, 5).Select(i => $"page-{i}"), seen.Where(s => s.StartsWith("page-", StringComparison.Ordinal)));
        Assert.Equal(HttpStatusCode.BadRequest, (await Gw.Api.GetAsync("api/devices?limit=0")).StatusCode);
        foreach (var s in sockets) s.Dispose();
    }
}

public sealed class KeepAliveAndExpiryTests
{
    [Fact]
    public async Task A_dead_peer_is_removed_by_keep_alive()
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string>
        {
            ["DeviceGate:WebSockets:KeepAliveInterval"] = "00:00:00.300",
            ["DeviceGate:WebSockets:KeepAliveTimeout"] = "00:00:00.700",
        });
        // A ClientWebSocket only answers pings while a receive is pending; never receiving makes it a dead peer.
        using var dead = await gw.ConnectAsync("zombie");
        using var alive = await gw.ConnectAsync("healthy");
        var pending = alive.ReceiveMessageAsync(TimeSpan.FromSeconds(30));
        await ApiExtensions.EventuallyAsync(async () =>
            !(await gw.Api.GetJsonAsync("api/devices/zombie")).GetProperty("online").GetBoolean(), "zombie removed");
        Assert.True((await gw.Api.GetJsonAsync("api/devices/healthy")).GetProperty("online").GetBoolean());
        await gw.Api.PostTextAsync("api/devices/healthy/messages", "pong-able");
        Assert.Equal("pong-able", (await pending).Text);
    }

    [Fact]
    public async Task A_connection_whose_token_expires_is_closed_with_1008()
    {
        await using var gw = await TestGateway.StartAsync();
        using var device = new ClientWebSocket();
        device.Options.SetRequestHeader("Authorization", "Bearer " + gw.Token("short", TimeSpan.FromSeconds(2)));
        await device.ConnectAsync(gw.WsUri("ws?deviceId=short"), new CancellationTokenSource(Timeouts.Default).Token);
        Assert.Equal((1008, "token_expired"), await device.ReceiveCloseAsync(TimeSpan.FromSeconds(40)));
    }

    [Fact]
    public async Task A_token_valid_for_months_connects_and_stays()
    {
        // Its exp is further away than one timer can wait (about 49 days): that used to fail the connection after the 101.
        await using var gw = await TestGateway.StartAsync();
        using var device = new ClientWebSocket();
        device.Options.SetRequestHeader("Authorization", "Bearer " + gw.Token("long-lived", TimeSpan.FromDays(120)));
        await device.ConnectAsync(gw.WsUri("ws?deviceId=long-lived"), new CancellationTokenSource(Timeouts.Default).Token);
        using var sent = await gw.Api.PostTextAsync("api/devices/long-lived/messages", "still here");
        Assert.Equal("still here", await device.ReceiveTextAsync());
        Assert.Equal(WebSocketState.Open, device.State);
    }
}
