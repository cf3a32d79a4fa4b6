using System.CommandLine;
using System.Text.Json;

namespace DeviceGate.Bench;

internal static class Scenarios
{
    /// <summary>A TCP port on 127.0.0.1 that was free a moment ago, for a process the tool starts.</summary>
    internal static int FreePort()
    {
        var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        probe.Start();
        var port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return port;
    }

    internal static string DefaultDll()
    {
        // bench/DeviceGate.Bench/bin/Release/net10.0 -> src/DeviceGate/bin/Release/net10.0/DeviceGate.dll
        var repo = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../.."));
        return Path.Combine(repo, "src/DeviceGate/bin/Release/net10.0/DeviceGate.dll");
    }

    /// <summary>
    /// Durable targeted sends (?ttl=60, Synchronous=Full) against non-durable ones (ttl=0), alternating A B A B on
    /// the same server and devices, median of the rounds.
    /// </summary>
    public static Command Durable()
    {
        var devices = new Option<int>("--devices") { Description = "Connected devices", DefaultValueFactory = _ => 1000 };
        var messages = new Option<int>("--messages") { Description = "Messages per run", DefaultValueFactory = _ => 20_000 };
        var senders = new Option<int>("--senders") { Description = "Concurrent API senders", DefaultValueFactory = _ => 32 };
        var rounds = new Option<int>("--rounds") { Description = "A/B rounds", DefaultValueFactory = _ => 3 };
        var dll = new Option<string?>("--server-dll") { Description = "DeviceGate.dll to start (default: the Release build in this repo)" };
        var synchronous = new Option<string>("--synchronous") { Description = "DeviceGate:Store:Synchronous", DefaultValueFactory = _ => "Full" };
        var command = new Command("durable", "Durable (ttl=60) vs non-durable (ttl=0) targeted sends to connected devices.");
        foreach (var o in new Option[] { devices, messages, senders, rounds, dll, synchronous }) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            await using var server = await ServerUnderTest.StartAsync(parse.GetValue(dll) ?? DefaultDll(), $"--DeviceGate:Store:Synchronous={parse.GetValue(synchronous)}");
            using var api = server.CreateApi();
            var n = parse.GetValue(devices);
            await using var fleet = await DeviceFleet.ConnectAsync(server, n, "bench-");
            Console.Error.WriteLine($"{n} devices connected to {server.BaseUri}");
            var results = new List<TargetedResult>();
            // Warm both paths (JIT tiering, pools, the database file) before anything is measured.
            foreach (var query in new[] { "", "?ttl=60" })
            {
                await fleet.RunAsync("warm-up", api, Math.Min(5000, parse.GetValue(messages)), parse.GetValue(senders), query, TimeSpan.FromMinutes(2));
            }
            for (var r = 0; r < parse.GetValue(rounds); r++)
            {
                foreach (var (name, query) in new[] { ("ttl=0", ""), ("ttl=60", "?ttl=60") })
                {
                    var result = await fleet.RunAsync(name, api, parse.GetValue(messages), parse.GetValue(senders), query, TimeSpan.FromMinutes(3));
                    Console.Error.WriteLine($"round {r + 1} {name,-7} {result.PerSecond,10:F0} msg/s  p50 {result.P50Ms,7:F1} ms  p99 {result.P99Ms,7:F1} ms  lost {result.Lost} dup {result.Duplicated} misrouted {result.Misrouted}");
                    results.Add(result);
                }
            }
            // Then devices that are offline while their messages are stored, and connect afterwards.
            var offline = await DeviceFleet.OfflineThenConnectAsync(server, api, n, parse.GetValue(messages), parse.GetValue(senders), TimeSpan.FromMinutes(3));
            Console.Error.WriteLine($"offline: stored {offline.AcceptedPerSecond:F0} msg/s, delivered on connect {offline.DeliveredPerSecond:F0} msg/s, lost {offline.Lost} dup {offline.Duplicated} misrouted {offline.Misrouted}");
            var plain = Median(results.Where(x => x.Name == "ttl=0"));
            var durable = Median(results.Where(x => x.Name == "ttl=60"));
            Console.WriteLine();
            Console.WriteLine($"| scenario ({n} devices, {parse.GetValue(messages)} msgs, {parse.GetValue(senders)} senders) | msg/s | p50 ms | p99 ms | lost | dup |");
            Console.WriteLine("|---|---|---|---|---|---|");
            foreach (var x in new[] { plain, durable }) Console.WriteLine($"| targeted {x.Name} | {x.PerSecond:F0} | {x.P50Ms:F1} | {x.P99Ms:F1} | {x.Lost} | {x.Duplicated} |");
            Console.WriteLine($"| ratio durable / non-durable | {durable.PerSecond / plain.PerSecond:F2} | | | | |");
            Console.WriteLine($"| ttl=60 to offline devices: stored | {offline.AcceptedPerSecond:F0} | | | | |");
            Console.WriteLine($"| then delivered when they connect (from the first connect to the last message) | {offline.DeliveredPerSecond:F0} | | | {offline.Lost} | {offline.Duplicated} |");
            Console.WriteLine(JsonSerializer.Serialize(new
            {
                scenario = "durable",
                devices = n,
                synchronous = parse.GetValue(synchronous),
                nonDurablePerSecond = plain.PerSecond,
                durablePerSecond = durable.PerSecond,
                ratio = durable.PerSecond / plain.PerSecond,
                lost = results.Sum(x => x.Lost),
                duplicated = results.Sum(x => x.Duplicated),
                misrouted = results.Sum(x => x.Misrouted),
                offlineStoredPerSecond = offline.AcceptedPerSecond,
                offlineDeliveredPerSecond = offline.DeliveredPerSecond,
                offlineLost = offline.Lost,
                offlineDuplicated = offline.Duplicated,
            }));
            return results.Sum(x => x.Lost + x.Misrouted) + offline.Lost + offline.Misrouted == 0 ? 0 : 1;
        });
        return command;
    }

    private static TargetedResult Median(IEnumerable<TargetedResult> runs)
    {
        var sorted = runs.OrderBy(r => r.PerSecond).ToList();
        return sorted[sorted.Count / 2];
    }
}
