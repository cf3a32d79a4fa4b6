using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.WebSockets;
using DeviceGate.Tests.Infrastructure;
using Xunit.Abstractions;

namespace DeviceGate.Tests.Functional;

/// <summary>
/// Runs alone: its failovers start many redis-server processes and four busy senders, enough load to make the timing
/// tests around it (keep-alive against a proxy's timeout) miss their marks.
/// </summary>
[CollectionDefinition(nameof(FailoverCollection), DisableParallelization = true)]
public sealed class FailoverCollection;

/// <summary>Cluster mode on Redis with Sentinel (issue 19): real redis-server processes, a primary killed with SIGKILL.</summary>
[Collection(nameof(FailoverCollection))]
public sealed class SentinelTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Nodes_follow_the_primary_through_a_failover_by_themselves_and_devices_stay_connected()
    {
        // Down after 4 s: the time without a primary is then surely longer than one readiness probe (its write waits up
        // to 2 s), so the probe sees it; with 1 s a quick promotion could end it inside the first probe.
        using var redis = RedisSentinelSet.Start(downAfterMilliseconds: 4000);
        var prefix = $"sentinel-{Guid.NewGuid():N}:";
        await using var one = await TestGateway.StartAsync(ClusterTests.Settings(redis.Configuration, prefix, "node-1"));
        await using var two = await TestGateway.StartAsync(ClusterTests.Settings(redis.Configuration, prefix, "node-2"));
        using var device = await one.ConnectAsync("steady");
        using (var before = await two.Api.PostTextAsync("api/devices/steady/messages?ttl=60", "before"))
        {
            Assert.Equal(HttpStatusCode.Accepted, before.StatusCode);
        }
        Assert.Equal("before", await device.ReceiveTextAsync());

        var old = redis.PrimaryPort();
        redis.Primary.Stop();
        using var anonymous = new HttpClient { BaseAddress = one.BaseUri };
        // Sentinel waits down-after-milliseconds (4 s here) before it promotes: no primary until then.
        await ApiExtensions.EventuallyAsync(async () =>
        {
            using var r = await anonymous.GetAsync("readyz");
            return r.StatusCode == HttpStatusCode.ServiceUnavailable && (await r.JsonAsync()).Str("status") == "store_unavailable";
        }, "not ready while no primary answers", TimeSpan.FromSeconds(30));
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(redis.PrimaryPort() != old), "sentinels promoted the replica", TimeSpan.FromSeconds(60));
        await ApiExtensions.EventuallyAsync(async () => (await anonymous.GetAsync("readyz")).StatusCode == HttpStatusCode.OK, "ready again", TimeSpan.FromSeconds(60));
        await ApiExtensions.EventuallyAsync(async () =>
        {
            using var r = await two.Api.PostTextAsync("api/devices/steady/messages?ttl=60", "after");
            return r.StatusCode == HttpStatusCode.Accepted;
        }, "accepted again", TimeSpan.FromSeconds(60));
        string got;
        do got = await device.ReceiveTextAsync();
        while (got != "after");
        Assert.Equal(WebSocketState.Open, device.State);
    }

    private sealed record FailoverRun(int Accepted, int Unavailable, int Lost, int Duplicated, TimeSpan KillToAccepted);

    /// <summary>
    /// Eight envelope devices on two nodes; four senders post durable messages through both nodes while the primary is
    /// killed with SIGKILL; the sentinels promote the replica; the old primary is started again (Sentinel makes it a
    /// replica) and sending goes on until 100 more were accepted. Every 202 is recorded, then waited for at its device.
    /// </summary>
    private async Task<FailoverRun> FailoverAsync(IFailingRedis redis, int minReplicas, TimeSpan waitForDelivery)
    {
        using var _ = redis;
        var prefix = $"failover-{Guid.NewGuid():N}:";
        Dictionary<string, string> Settings(string node)
        {
            var settings = ClusterTests.Settings(redis.Configuration, prefix, node);
            settings["DeviceGate:Redis:MinReplicas"] = minReplicas.ToString(System.Globalization.CultureInfo.InvariantCulture);
            settings["DeviceGate:Redis:ReplicationTimeout"] = "00:00:01";
            return settings;
        }
        await using var one = await TestGateway.StartAsync(Settings("node-1"));
        await using var two = await TestGateway.StartAsync(Settings("node-2"));
        var nodes = new[] { one, two };
        var devices = Enumerable.Range(0, 8).Select(i => $"fo-{i}").ToArray();
        var received = new ConcurrentDictionary<string, int>(StringComparer.Ordinal);
        using var stop = new CancellationTokenSource();
        using var readersStop = new CancellationTokenSource();
        var sockets = new List<ClientWebSocket>();
        var readers = new List<Task>();
        for (var i = 0; i < devices.Length; i++)
        {
            var socket = await nodes[i % 2].ConnectEnvelopeAsync(devices[i]);
            sockets.Add(socket);
            readers.Add(Task.Run(async () =>
            {
                var buffer = new byte[64 * 1024];
                while (socket.State == WebSocketState.Open)
                {
                    WebSocketReceiveResult r;
                    try
                    {
                        r = await socket.ReceiveAsync(buffer, readersStop.Token);
                    }
                    catch (Exception ex) when (ex is OperationCanceledException or WebSocketException)
                    {
                        return;
                    }
                    if (r.MessageType == WebSocketMessageType.Close) return;
                    var e = System.Text.Json.JsonDocument.Parse(buffer.AsMemory(0, r.Count)).RootElement;
                    if (e.Str("type") != "message") continue;
                    var id = e.Str("id");
                    received.AddOrUpdate(id, 1, (_, n) => n + 1);
                    await socket.SendJsonAsync(new { type = "ack", id });
                }
            }));
        }

        var accepted = new ConcurrentDictionary<string, byte>(StringComparer.Ordinal);
        var unavailable = 0;
        long killedAt = 0, firstAfterKill = 0;
        var afterKill = 0;
        var afterKillOnKilledShard = 0;
        var sent = 0;
        async Task SendLoopAsync(int sender)
        {
            var random = new Random(sender);
            while (!stop.IsCancellationRequested)
            {
                var n = Interlocked.Increment(ref sent);
                var startedAfterKill = Volatile.Read(ref killedAt) != 0;
                var device = devices[random.Next(devices.Length)];
                using var request = new HttpRequestMessage(HttpMethod.Post, $"api/devices/{device}/messages?ttl=300") { Content = new StringContent($"m{n}") };
                request.Headers.Add("Idempotency-Key", $"k{n}");
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
                HttpResponseMessage response;
                try
                {
                    response = await nodes[random.Next(2)].Api.SendAsync(request, timeout.Token);
                }
                catch (OperationCanceledException) when (!stop.IsCancellationRequested)
                {
                    throw new Xunit.Sdk.XunitException("an API request hung past 15 s during the failover");
                }
                using (response)
                {
                    if (response.StatusCode == HttpStatusCode.ServiceUnavailable)
                    {
                        Assert.True(response.Headers.RetryAfter is not null, "503 with Retry-After");
                        if (Interlocked.Increment(ref unavailable) % 200 == 1) output.WriteLine($"503 after {Stopwatch.GetElapsedTime(Volatile.Read(ref killedAt)).TotalSeconds:0.0} s: {await response.Content.ReadAsStringAsync()}");
                        continue;
                    }
                    Assert.True(response.StatusCode == HttpStatusCode.Accepted, $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()} "
                        + string.Join("\n", nodes.SelectMany(g => g.Logs.Lines).Where(l => l.Contains("Exception", StringComparison.Ordinal)).TakeLast(3)));
                    accepted[(await response.JsonAsync()).Str("id")] = 0;
                    if (startedAfterKill)
                    {
                        Interlocked.CompareExchange(ref firstAfterKill, Stopwatch.GetTimestamp(), 0);
                        Interlocked.Increment(ref afterKill);
                        if (device == devices[0]) Interlocked.Increment(ref afterKillOnKilledShard);
                    }
                }
            }
        }
        var senders = Enumerable.Range(0, 4).Select(i => Task.Run(() => SendLoopAsync(i))).ToArray();
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(accepted.Count >= 200), "200 accepted before the kill", TimeSpan.FromSeconds(60));

        // The primary that holds the first device's keys (in a Redis Cluster, one shard of three).
        var promoted = redis.KillPrimaryOf($"{prefix}{{{devices[0]}}}:outbox");
        Volatile.Write(ref killedAt, Stopwatch.GetTimestamp());
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(promoted()), "a replica was promoted", TimeSpan.FromSeconds(60));
        // The old primary comes back; it becomes a replica of the new one (with MinReplicas=1, writes need it).
        redis.RelaunchKilled();
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(Volatile.Read(ref afterKill) >= 100 && Volatile.Read(ref afterKillOnKilledShard) >= 10),
            "100 accepted after the failover, 10 of them on the killed primary's shard", TimeSpan.FromSeconds(90));
        stop.Cancel();
        await Task.WhenAll(senders);

        await ApiExtensions.EventuallyAsync(() => Task.FromResult(accepted.Keys.All(received.ContainsKey)), "every accepted message delivered",
            waitForDelivery).ContinueWith(_ => { });
        foreach (var socket in sockets) Assert.Equal(WebSocketState.Open, socket.State);
        var lost = accepted.Keys.Count(id => !received.ContainsKey(id));
        foreach (var id in accepted.Keys.Where(id => !received.ContainsKey(id)).Take(10))
        {
            using var status = await one.Api.GetAsync($"api/messages/{id}");
            output.WriteLine($"not delivered: {id}: {(int)status.StatusCode} {await status.Content.ReadAsStringAsync()}");
        }
        if (lost > 0)
        {
            foreach (var (gw, name) in new[] { (one, "node-1"), (two, "node-2") })
            {
                foreach (var line in gw.Logs.Lines.Where(l => !l.Contains("Information", StringComparison.Ordinal) || l.Contains("luster", StringComparison.Ordinal)).TakeLast(40)) output.WriteLine($"{name}: {line}");
            }
        }
        var duplicated = received.Count(kv => kv.Value > 1);
        readersStop.Cancel();
        await Task.WhenAll(readers);
        var run = new FailoverRun(accepted.Count, unavailable, lost, duplicated,
            Stopwatch.GetElapsedTime(Volatile.Read(ref killedAt), Volatile.Read(ref firstAfterKill)));
        output.WriteLine($"{redis.GetType().Name} MinReplicas={minReplicas}: {run.Accepted} accepted (202), {run.Unavailable} answered 503, lost {run.Lost}, delivered twice {run.Duplicated}, kill to first 202: {run.KillToAccepted.TotalSeconds:0.0} s");
        foreach (var socket in sockets) socket.Dispose();
        return run;
    }

    [Fact]
    public async Task With_min_replicas_1_every_202_survives_a_primary_killed_during_durable_sends_and_is_delivered_once()
    {
        var run = await FailoverAsync(RedisSentinelSet.Start(), minReplicas: 1, waitForDelivery: TimeSpan.FromSeconds(60));
        Assert.Equal(0, run.Lost);
        Assert.Equal(0, run.Duplicated);
    }

    [Fact]
    public async Task On_a_redis_cluster_with_min_replicas_1_every_202_survives_one_shard_s_primary_killed_during_durable_sends()
    {
        var run = await FailoverAsync(RedisClusterSet.Start(), minReplicas: 1, waitForDelivery: TimeSpan.FromSeconds(60));
        Assert.Equal(0, run.Lost);
        Assert.Equal(0, run.Duplicated);
    }

    [Fact]
    public async Task With_min_replicas_0_the_same_failover_may_lose_what_was_acknowledged_reported_not_asserted()
    {
        var run = await FailoverAsync(RedisSentinelSet.Start(), minReplicas: 0, waitForDelivery: TimeSpan.FromSeconds(15));
        // Evidence that the setting matters, not a promise: the count is reported in the test output.
        Assert.True(run.Accepted > 0);
    }
}
