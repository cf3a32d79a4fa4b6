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
}
