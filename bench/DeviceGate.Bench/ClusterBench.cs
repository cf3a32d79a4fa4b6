using System.CommandLine;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;

namespace DeviceGate.Bench;

/// <summary>
/// Cross-node cost: devices spread over two nodes sharing a redis-server, API calls to node 1 only (so half the
/// targeted sends cross nodes), against one node alone, in the same run.
/// </summary>
internal static class ClusterBench
{
    public static Command Create()
    {
        var devices = new Option<int>("--devices") { DefaultValueFactory = _ => 1000 };
        var messages = new Option<int>("--messages") { DefaultValueFactory = _ => 20_000 };
        var broadcasts = new Option<int>("--broadcasts") { DefaultValueFactory = _ => 30 };
        var senders = new Option<int>("--senders") { DefaultValueFactory = _ => 32 };
        var dll = new Option<string?>("--server-dll");
        var redisKind = new Option<string>("--redis") { DefaultValueFactory = _ => "single", Description = "single (one redis-server), sentinel (a primary, a replica and three sentinels: the durable path with MinReplicas 0 and 1) or cluster (a Redis Cluster of three primaries with a replica each, against one redis-server, MinReplicas 0 and 1)" };
        var command = new Command("cluster", "Two nodes on Redis vs one node: targeted throughput and p99, broadcast time to all, the durable path.");
        foreach (var o in new Option[] { devices, messages, broadcasts, senders, dll, redisKind }) command.Options.Add(o);
        command.SetAction(async parse =>
        {
            var server = parse.GetValue(dll) ?? Scenarios.DefaultDll();
            var n = parse.GetValue(devices);
            var results = new List<object>();
            Console.WriteLine($"| setup ({n} devices) | targeted msg/s | p50 ms | p99 ms | lost | broadcast p50 ms | broadcast p99 ms |");
            Console.WriteLine("|---|---|---|---|---|---|---|");

            await using (var alone = await ServerUnderTest.StartAsync(server))
            {
                results.Add(await MeasureAsync("one node", [alone], n, parse.GetValue(messages), parse.GetValue(senders), parse.GetValue(broadcasts)));
            }
            var kind = parse.GetValue(redisKind);
            var processes = new List<Process>();
            processes.Add(StartRedis(out var redisPort));
            var single = $"127.0.0.1:{redisPort}";
            // (name, configuration, MinReplicas, durable path measured)
            var setups = new List<(string Name, string Configuration, int MinReplicas, bool Durable)>();
            switch (kind)
            {
                case "sentinel":
                {
                    processes.Add(StartRedis(out _, "--replicaof", "127.0.0.1", redisPort.ToString(System.Globalization.CultureInfo.InvariantCulture)));
                    var sentinels = new List<int>();
                    for (var i = 0; i < 3; i++)
                    {
                        processes.Add(StartSentinel(redisPort, out var port));
                        sentinels.Add(port);
                    }
                    // Let the sentinels find the replica and each other before the nodes ask them for the primary.
                    await Task.Delay(TimeSpan.FromSeconds(3));
                    var configuration = string.Join(",", sentinels.Select(p => $"127.0.0.1:{p}")) + ",serviceName=bench";
                    setups.Add(("two nodes + Sentinel, MinReplicas=0", configuration, 0, true));
                    setups.Add(("two nodes + Sentinel, MinReplicas=1", configuration, 1, true));
                    break;
                }
                case "cluster":
                {
                    var configuration = await StartClusterAsync(processes);
                    setups.Add(("two nodes + Redis", single, 0, true));
                    setups.Add(("two nodes + Redis Cluster (3 primaries), MinReplicas=0", configuration, 0, true));
                    setups.Add(("two nodes + Redis Cluster (3 primaries), MinReplicas=1", configuration, 1, true));
                    break;
                }
                default:
                    setups.Add(("two nodes + Redis", single, 0, false));
                    break;
            }
            var secret = Convert.ToHexString(RandomNumberGenerator.GetBytes(32));
            var key = Convert.ToHexString(RandomNumberGenerator.GetBytes(24));
            for (var s = 0; s < setups.Count; s++)
            {
                var setup = setups[s];
                string[] Cluster(string node) => [$"--DeviceGate:Redis:Configuration={setup.Configuration}", $"--DeviceGate:Cluster:NodeId={node}",
                    $"--DeviceGate:Redis:MinReplicas={setup.MinReplicas}", $"--DeviceGate:Redis:Prefix=bench{s}:"];
                await using var one = await ServerUnderTest.StartAsync(server, secret, key, Cluster("bench-1"));
                await using var two = await ServerUnderTest.StartAsync(server, secret, key, Cluster("bench-2"));
                results.Add(await MeasureAsync(setup.Name, [one, two], n, parse.GetValue(messages), parse.GetValue(senders),
                    kind == "sentinel" ? 0 : parse.GetValue(broadcasts), durable: setup.Durable));
            }
            foreach (var p in processes) p.Kill();
            foreach (var r in results) Console.WriteLine(JsonSerializer.Serialize(r));
        });
        return command;
    }

    private static async Task<object> MeasureAsync(string name, ServerUnderTest[] servers, int devices, int messages, int senders, int broadcasts, bool durable = false)
    {
        await using var fleet = await DeviceFleet.ConnectAsync(servers, devices, "cb-");
        using var api = servers[0].CreateApi();
        await fleet.RunAsync("warm-up", api, Math.Min(5000, messages), senders, "", TimeSpan.FromMinutes(2));
        // Median of three runs: single runs on a shared 2-core machine swing widely.
        var runs = new List<TargetedResult>();
        for (var i = 0; i < 3; i++) runs.Add(await fleet.RunAsync(name, api, messages, senders, "", TimeSpan.FromMinutes(3)));
        var targeted = runs.OrderBy(r => r.PerSecond).ElementAt(1);
        var (bP50, bP99) = (0.0, 0.0);
        if (broadcasts > 0) (bP50, bP99, _) = await fleet.BroadcastAsync(api, broadcasts, TimeSpan.FromSeconds(30));
        Console.WriteLine($"| {name} | {targeted.PerSecond:F0} | {targeted.P50Ms:F1} | {targeted.P99Ms:F1} | {targeted.Lost} | {bP50:F1} | {bP99:F1} |");
        TargetedResult? stored = null;
        if (durable)
        {
            // The durable path: every send is stored (ttl) before the 202, with MinReplicas its WAIT too.
            stored = await fleet.RunAsync(name + ", ttl=60", api, messages, senders, "?ttl=60", TimeSpan.FromMinutes(3));
            Console.WriteLine($"| {name}, durable (ttl=60) | {stored.PerSecond:F0} | {stored.P50Ms:F1} | {stored.P99Ms:F1} | {stored.Lost} | | |");
        }
        return new { scenario = "cluster", setup = name, devices, targetedPerSecond = targeted.PerSecond, targetedP99Ms = targeted.P99Ms, lost = targeted.Lost, duplicated = targeted.Duplicated,
            broadcastP50Ms = bP50, broadcastP99Ms = bP99, durablePerSecond = stored?.PerSecond, durableP99Ms = stored?.P99Ms, durableLost = stored?.Lost };
    }

    /// <summary>Six redis-servers made a cluster of three primaries with a replica each; returns the seeds once cluster_state is ok.</summary>
    private static async Task<string> StartClusterAsync(List<Process> processes)
    {
        var ports = new List<int>();
        for (var i = 0; i < 6; i++)
        {
            processes.Add(StartRedis(out var port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000"));
            ports.Add(port);
        }
        var create = new ProcessStartInfo("redis-cli") { UseShellExecute = false, RedirectStandardOutput = true };
        foreach (var a in new[] { "--cluster", "create" }.Concat(ports.Select(p => $"127.0.0.1:{p}")).Concat(["--cluster-replicas", "1", "--cluster-yes"])) create.ArgumentList.Add(a);
        using (var p = Process.Start(create)!)
        {
            await p.StandardOutput.ReadToEndAsync();
            if (!p.WaitForExit(60_000) || p.ExitCode != 0) throw new InvalidOperationException("redis-cli --cluster create failed");
        }
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!ports.All(port => Cli(port, "CLUSTER", "INFO").Contains("cluster_state:ok", StringComparison.Ordinal)))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("the Redis Cluster did not reach cluster_state:ok in 60 s");
            await Task.Delay(200);
        }
        return string.Join(",", ports.Select(p => $"127.0.0.1:{p}"));
    }

    private static string Cli(int port, params string[] args)
    {
        var info = new ProcessStartInfo("redis-cli") { UseShellExecute = false, RedirectStandardOutput = true };
        foreach (var a in new[] { "-p", port.ToString(System.Globalization.CultureInfo.InvariantCulture) }.Concat(args)) info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit(10_000);
        return output;
    }

    private static Process StartSentinel(int primaryPort, out int port)
    {
        port = Scenarios.FreePort();
        var dir = Directory.CreateTempSubdirectory("devicegate-bench-sentinel-").FullName;
        var config = Path.Combine(dir, "sentinel.conf");
        File.WriteAllLines(config, [$"port {port}", "bind 127.0.0.1", $"dir {dir}", $"sentinel monitor bench 127.0.0.1 {primaryPort} 2", "sentinel down-after-milliseconds bench 2000"]);
        var info = new ProcessStartInfo("redis-server") { UseShellExecute = false, RedirectStandardOutput = true };
        info.ArgumentList.Add(config);
        info.ArgumentList.Add("--sentinel");
        var p = Process.Start(info)!;
        p.OutputDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        Thread.Sleep(300);
        return p;
    }

    private static Process StartRedis(out int port, params string[] extra)
    {
        port = Scenarios.FreePort();
        // A folder of its own: a replica writes the primary's snapshot (dump.rdb) there when it syncs, whatever --save says.
        var dir = Directory.CreateTempSubdirectory("devicegate-bench-redis-").FullName;
        var info = new ProcessStartInfo("redis-server") { UseShellExecute = false, RedirectStandardOutput = true };
        foreach (var a in new[] { "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir }.Concat(extra)) info.ArgumentList.Add(a);
        var p = Process.Start(info)!;
        p.OutputDataReceived += (_, _) => { };
        p.BeginOutputReadLine();
        Thread.Sleep(300);
        return p;
    }
}
