using System.Diagnostics;
using System.Net;
using System.Net.WebSockets;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

/// <summary>What happens when a node dies or Redis goes away and comes back.</summary>
public sealed class ClusterFailureTests : IDisposable
{
    private readonly string _dir = TempFolder.Create();

    public void Dispose() => TempFolder.Delete(_dir);

    [Fact]
    public async Task Cluster_mode_refuses_to_start_without_shared_secrets()
    {
        var (code, stdout, stderr) = await GatewayProcess.RunCliAsync(_dir, null, "serve", "--urls", "http://127.0.0.1:0",
            $"--DeviceGate:Redis:Configuration={RedisServer.Shared.Configuration}");
        Assert.NotEqual(0, code);
        Assert.Contains("DeviceGate:Auth:TokenSecret", stdout + stderr);
        Assert.Contains("cluster mode", stdout + stderr);
    }

    [Fact]
    public async Task A_killed_node_loses_its_devices_within_the_lease()
    {
        var prefix = $"kill-{Guid.NewGuid():N}:";
        await using var survivor = await TestGateway.StartAsync(ClusterTests.Settings(RedisServer.Shared.Configuration, prefix, "survivor"));
        await using var doomed = await GatewayProcess.StartAsync(_dir,
            $"--DeviceGate:Auth:TokenSecret={TestGateway.Secret}", $"--DeviceGate:Auth:ApiKeys:0={TestGateway.ApiKey}",
            $"--DeviceGate:Redis:Configuration={RedisServer.Shared.Configuration}", $"--DeviceGate:Redis:Prefix={prefix}",
            "--DeviceGate:Cluster:NodeId=doomed", "--DeviceGate:Cluster:PresenceLease=00:00:02");
        using var device = new ClientWebSocket();
        device.Options.SetRequestHeader("Authorization", "Bearer " + survivor.Token("on-doomed"));
        await device.ConnectAsync(new Uri(doomed.BaseUri.ToString().Replace("http", "ws") + "ws?deviceId=on-doomed"), new CancellationTokenSource(Timeouts.Default).Token);
        Assert.Equal("doomed", (await survivor.Api.GetJsonAsync("api/devices/on-doomed")).Str("node"));

        await doomed.KillHardAsync();
        var killedAt = Stopwatch.StartNew();
        await ApiExtensions.EventuallyAsync(async () => !(await survivor.Api.GetJsonAsync("api/devices/on-doomed")).GetProperty("online").GetBoolean(), "presence expired");
        Assert.True(killedAt.Elapsed < TimeSpan.FromSeconds(2 + 3), $"took {killedAt.Elapsed}");
        Assert.DoesNotContain((await survivor.Api.GetJsonAsync("api/devices")).GetProperty("devices").EnumerateArray(), d => d.Str("id") == "on-doomed");
    }

    [Fact]
    public async Task A_redis_outage_answers_503_loses_nothing_acknowledged_and_delivery_resumes_without_restarting_nodes()
    {
        using var redis = RedisServer.Start(persistent: true);
        var prefix = $"outage-{Guid.NewGuid():N}:";
        await using var one = await TestGateway.StartAsync(ClusterTests.Settings(redis.Configuration, prefix, "node-1"));
        await using var two = await TestGateway.StartAsync(ClusterTests.Settings(redis.Configuration, prefix, "node-2"));
        using var device = await one.ConnectAsync("steady");
        using (var before = await two.Api.PostTextAsync("api/devices/steady/messages?ttl=60", "before"))
        {
            Assert.Equal(HttpStatusCode.Accepted, before.StatusCode);
        }
        Assert.Equal("before", await device.ReceiveTextAsync());
        var acknowledged = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            using var r = await two.Api.PostTextAsync("api/devices/offline-one/messages?ttl=600", $"kept {i}");
            Assert.Equal(HttpStatusCode.Accepted, r.StatusCode);
            acknowledged.Add($"kept {i}");
        }

        redis.Stop();
        using (var during = await two.Api.PostTextAsync("api/devices/steady/messages?ttl=60", "during"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, during.StatusCode);
        }
        using var anonymous = new HttpClient { BaseAddress = one.BaseUri };
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await anonymous.GetAsync("readyz")).StatusCode);
        Assert.Equal(WebSocketState.Open, device.State);

        redis.Launch();
        await ApiExtensions.EventuallyAsync(async () => (await anonymous.GetAsync("readyz")).StatusCode == HttpStatusCode.OK, "ready again", TimeSpan.FromSeconds(30));
        await ApiExtensions.EventuallyAsync(async () =>
        {
            using var r = await two.Api.PostTextAsync("api/devices/steady/messages?ttl=60", "after");
            return r.StatusCode == HttpStatusCode.Accepted && (await r.JsonAsync()).Str("status") == "sent";
        }, "delivery resumed", TimeSpan.FromSeconds(30));
        string got;
        do got = await device.ReceiveTextAsync();
        while (got != "after");

        using var late = await two.ConnectAsync("offline-one");
        foreach (var expected in acknowledged) Assert.Equal(expected, await late.ReceiveTextAsync());
    }

    [Fact]
    public async Task During_a_redis_outage_handshakes_and_listings_answer_503_with_a_body_and_local_ttl0_sends_still_work()
    {
        using var redis = RedisServer.Start();
        var prefix = $"outage503-{Guid.NewGuid():N}:";
        await using var node = await TestGateway.StartAsync(ClusterTests.Settings(redis.Configuration, prefix, "node-1"));
        using var device = await node.ConnectAsync("local-one");
        // Received means the device's lane has loaded its backlog from Redis (a message waits for that).
        using (var first = await node.Api.PostTextAsync("api/devices/local-one/messages", "ready"))
        {
            Assert.Equal(HttpStatusCode.Accepted, first.StatusCode);
        }
        Assert.Equal("ready", await device.ReceiveTextAsync());
        redis.Stop();

        using var refused = new ClientWebSocket();
        refused.Options.CollectHttpResponseDetails = true;
        refused.Options.SetRequestHeader("Authorization", "Bearer " + node.Token("newcomer"));
        await Assert.ThrowsAsync<WebSocketException>(() => refused.ConnectAsync(node.WsUri("ws?deviceId=newcomer"), new CancellationTokenSource(Timeouts.Default).Token));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.HttpStatusCode);
        Assert.NotNull(refused.HttpResponseHeaders?["Retry-After"]);

        using (var list = await node.Api.GetAsync("api/devices"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, list.StatusCode);
            Assert.NotNull(list.Headers.RetryAfter);
            Assert.Equal("store_unavailable", (await list.JsonAsync()).Str("type"));
        }
        // A device held by this node is reached without Redis.
        using (var send = await node.Api.PostTextAsync("api/devices/local-one/messages", "no redis needed"))
        {
            Assert.Equal(HttpStatusCode.Accepted, send.StatusCode);
        }
        Assert.Equal("no redis needed", await device.ReceiveTextAsync());
        Assert.Equal(WebSocketState.Open, device.State);
    }

    [Fact]
    public async Task When_redis_loses_its_data_nodes_register_again_and_readers_get_a_reset()
    {
        using var redis = RedisServer.Start();
        var prefix = $"flush-{Guid.NewGuid():N}:";
        await using var one = await TestGateway.StartAsync(ClusterTests.Settings(redis.Configuration, prefix, "node-1"));
        await using var two = await TestGateway.StartAsync(ClusterTests.Settings(redis.Configuration, prefix, "node-2"));
        using var a = await one.ConnectAsync("kept-a");
        using var b = await two.ConnectAsync("kept-b");
        await using var sse = await SseClient.OpenAsync(two.Api, "api/events");
        using (var marker = await one.ConnectAsync("marker-before"))
        {
            await sse.NextWhereAsync(e => e.Event == "connected" && e.Data.Str("device") == "marker-before");
        }

        using (var mux = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(redis.Configuration + ",allowAdmin=true"))
        {
            await mux.GetServers()[0].FlushAllDatabasesAsync();
        }

        var reset = await sse.NextWhereAsync(e => e.Event == "reset");
        await ApiExtensions.EventuallyAsync(async () =>
        {
            var ids = (await two.Api.GetJsonAsync("api/devices")).GetProperty("devices").EnumerateArray().Select(d => d.Str("id")).ToHashSet();
            return ids.Contains("kept-a") && ids.Contains("kept-b");
        }, "devices registered again");
        using (var send = await two.Api.PostTextAsync("api/devices/kept-a/messages", "after the flush"))
        {
            Assert.Equal(HttpStatusCode.Accepted, send.StatusCode);
        }
        Assert.Equal("after the flush", await a.ReceiveTextAsync());
        // Events flow again, numbered above everything before the loss.
        using var late = await one.ConnectAsync("marker-after");
        var after = await sse.NextWhereAsync(e => e.Event == "connected" && e.Data.Str("device") == "marker-after");
        Assert.True(after.Id > reset.Id, $"{after.Id} after reset {reset.Id}");
        Assert.Single(one.Logs.Lines, l => l.Contains("[1401]", StringComparison.Ordinal));
        Assert.Single(two.Logs.Lines, l => l.Contains("[1401]", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Forgetting_a_device_keeps_its_revocation_in_redis()
    {
        var prefix = $"forget-{Guid.NewGuid():N}:";
        await using var one = await TestGateway.StartAsync(ClusterTests.Settings(RedisServer.Shared.Configuration, prefix, "node-1"));
        await using var two = await TestGateway.StartAsync(ClusterTests.Settings(RedisServer.Shared.Configuration, prefix, "node-2"));
        var stolen = one.Token("stolen-c");
        Assert.Equal(HttpStatusCode.NoContent, (await one.Api.PostAsync("api/devices/stolen-c/revoke-tokens", null)).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await two.Api.DeleteAsync("api/devices/stolen-c")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await one.Api.GetAsync("api/devices/stolen-c")).StatusCode);
        foreach (var node in new[] { one, two })
        {
            using var socket = new ClientWebSocket();
            socket.Options.CollectHttpResponseDetails = true;
            socket.Options.SetRequestHeader("Authorization", "Bearer " + stolen);
            await Assert.ThrowsAsync<WebSocketException>(() => socket.ConnectAsync(node.WsUri("ws?deviceId=stolen-c"), new CancellationTokenSource(Timeouts.Default).Token));
            Assert.Equal(HttpStatusCode.Unauthorized, socket.HttpStatusCode);
        }
    }
}
