using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;

namespace DeviceGate.Bench;

/// <summary>One measured figure of one scenario on one server in one round.</summary>
internal sealed record Sample(string Scenario, string Metric, string Kind, int Round, double Value);

/// <summary>
/// <c>compare</c>: the baseline server (bench/Baseline) and DeviceGate, alternately (A B A B, fresh process each time),
/// through the same scenarios; medians per server and their ratio per scenario.
/// </summary>
internal static class Compare
{
    public static Command Create()
    {
        var devices = new Option<int>("--devices") { Description = "Connected devices (N)", DefaultValueFactory = _ => 10_000 };
        var rounds = new Option<int>("--rounds") { Description = "A/B rounds (each starts both servers afresh)", DefaultValueFactory = _ => 3 };
        var messages = new Option<int>("--messages") { Description = "Targeted messages per run", DefaultValueFactory = _ => 30_000 };
        var senders = new Option<int>("--senders") { Description = "Concurrent API senders", DefaultValueFactory = _ => 32 };
        var broadcasts = new Option<int>("--broadcasts") { Description = "Broadcasts per fanout run", DefaultValueFactory = _ => 30 };
        var echoConnections = new Option<int>("--echo-connections") { DefaultValueFactory = _ => 100 };
        var echoRoundTrips = new Option<int>("--echo-roundtrips") { Description = "Round trips per echo connection", DefaultValueFactory = _ => 2000 };
        var churnSeconds = new Option<double>("--churn-seconds") { DefaultValueFactory = _ => 10 };
        var batchSize = new Option<int>("--batch-size") { DefaultValueFactory = _ => 500 };
        var concurrency = new Option<int>("--connect-concurrency") { DefaultValueFactory = _ => 200 };
        var sources = new Option<int>("--sources") { Description = "Loopback source addresses (127.0.0.2 ...)", DefaultValueFactory = _ => 8 };
        var scenarios = new Option<string>("--scenarios") { DefaultValueFactory = _ => "connect,fanout,targeted,batch,echo,d2d,churn" };
        var hold = new Option<double>("--hold-seconds") { Description = "Keep the fleet connected this long after connecting (to attach dotnet-gcdump or dotnet-trace)" };
        var only = new Option<string?>("--servers") { Description = "which servers, in the order of each round: baseline (Kestrel), node (Node ws: npm ci --prefix bench/Baseline.Node first), devicegate (default baseline,devicegate)" };
        var url = new Option<string?>("--url") { Description = "Drive an already running server speaking DeviceGate's contract instead (one pass, no ratios)" };
        var pid = new Option<int>("--pid") { Description = "With --url: its process id, for memory and file figures from /proc" };
        var apiKey = new Option<string?>("--api-key") { Description = "With --url: an API key" };
        var tokenSecret = new Option<string?>("--token-secret") { Description = "With --url: its DeviceGate:Auth:TokenSecret, to sign device tokens" };
        var dll = new Option<string?>("--server-dll") { Description = "DeviceGate.dll (default: this repo's Release build)" };
        var baselineDll = new Option<string?>("--baseline-dll") { Description = "Baseline.dll (default: this repo's Release build)" };
        var serverArgs = new Option<string[]>("--server-arg") { Description = "Extra argument for each DeviceGate server (repeatable), e.g. --server-arg=--DeviceGate:Telemetry:PropagateToDevices=true", AllowMultipleArgumentsPerToken = false };
        var otlpSink = new Option<bool>("--otlp-sink") { Description = "Trace every request (always_on) and export the spans over OTLP/HTTP to a local receiver that drops them" };
        var command = new Command("compare", "Baseline vs DeviceGate, alternately, through connect/fanout/targeted/batch/echo/d2d/churn; median ratios.");
        foreach (var o in new Option[] { url, pid, apiKey, tokenSecret, hold, only, devices, rounds, messages, senders, broadcasts, echoConnections, echoRoundTrips, churnSeconds, batchSize, concurrency, sources, scenarios, dll, baselineDll, serverArgs, otlpSink })
        {
            command.Options.Add(o);
        }
        command.SetAction(async (parse, ct) =>
        {
            SourceAddresses.Use(parse.GetValue(sources));
            var settings = new Settings(parse.GetValue(devices), parse.GetValue(messages), parse.GetValue(senders), parse.GetValue(broadcasts),
                parse.GetValue(echoConnections), parse.GetValue(echoRoundTrips), TimeSpan.FromSeconds(parse.GetValue(churnSeconds)),
                parse.GetValue(batchSize), parse.GetValue(concurrency), parse.GetValue(scenarios)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToHashSet(),
                TimeSpan.FromSeconds(parse.GetValue(hold)));
            var kinds = (parse.GetValue(only) ?? "baseline,devicegate").Split(',', StringSplitOptions.TrimEntries);
            var samples = new List<Sample>();
            var failures = new List<string>();
            if (parse.GetValue(url) is { } externalUrl)
            {
                var external = new Uri(externalUrl.EndsWith('/') ? externalUrl : externalUrl + "/");
                await using var attached = ServerUnderTest.Attach(external, parse.GetValue(apiKey) ?? "", parse.GetValue(tokenSecret) ?? "", parse.GetValue(pid));
                Console.Error.WriteLine($"external server at {external} (pid {attached.Pid})");
                await RunAllAsync(attached, settings, 1, samples, failures);
                Report(samples, settings);
                foreach (var f in failures) Console.Error.WriteLine("FAILED: " + f);
                return failures.Count == 0 ? 0 : 1;
            }
            await using var sink = parse.GetValue(otlpSink) ? new OtlpSink() : null;
            string[] extra = [.. parse.GetValue(serverArgs) ?? [], .. sink?.ServerArgs ?? []];
            for (var round = 1; round <= parse.GetValue(rounds); round++)
            {
                foreach (var kind in kinds)
                {
                    await using var server = kind == "baseline"
                        ? await ServerUnderTest.StartBaselineAsync(parse.GetValue(baselineDll) ?? BaselineDll())
                        : kind == "node"
                        ? await ServerUnderTest.StartNodeBaselineAsync(NodeBaselineScript())
                        : await ServerUnderTest.StartAsync(parse.GetValue(dll) ?? Scenarios.DefaultDll(),
                            ["--DeviceGate:Limits:MaxConnections=200000", "--DeviceGate:Limits:ConnectsPerSecond=100000", "--DeviceGate:Limits:ConnectsBurst=100000",
                            // echo does 2,000 round trips per connection as fast as it can: what the per-device rate limit (200/s) is there to stop.
                            "--DeviceGate:Limits:DeviceMessagesPerSecond=1000000", "--DeviceGate:Limits:DeviceMessagesBurst=1000000", .. extra]);
                    Console.Error.WriteLine($"round {round}: {kind} (pid {server.Pid}) at {server.BaseUri}");
                    await RunAllAsync(server, settings, round, samples, failures);
                }
            }
            Report(samples, settings);
            if (sink is not null)
            {
                Console.Error.WriteLine($"OTLP sink: {sink.Requests} exports, {sink.Bytes / 1024.0 / 1024:F1} MiB of spans received and dropped");
                if (sink.Requests == 0) failures.Add("--otlp-sink: the server exported no spans");
            }
            foreach (var f in failures) Console.Error.WriteLine("FAILED: " + f);
            return failures.Count == 0 ? 0 : 1;
        });
        return command;
    }

    internal sealed record Settings(int Devices, int Messages, int Senders, int Broadcasts, int EchoConnections, int EchoRoundTrips,
        TimeSpan Churn, int BatchSize, int ConnectConcurrency, HashSet<string> Scenarios, TimeSpan Hold);

    private static string NodeBaselineScript() => Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../..", "bench/Baseline.Node/server.js"));

    private static string BaselineDll()
    {
        var repo = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../.."));
        return Path.Combine(repo, "bench/Baseline/bin/Release/net10.0/Baseline.dll");
    }

    private static async Task RunAllAsync(ServerUnderTest server, Settings s, int round, List<Sample> samples, List<string> failures)
    {
        void Add(string scenario, string metric, double value) => samples.Add(new Sample(scenario, metric, server.Kind, round, value));
        var dg = server.Kind is not ("baseline" or "node"); // DeviceGate itself, or an external server speaking its whole contract
        using var api = server.CreateApi();

        // Warm-up: JIT tiers, pools and the first connections, so the memory baseline below is the server at rest.
        await using (var warm = await DeviceFleet.ConnectAsync(server, Math.Min(200, s.Devices), "warm-", s.ConnectConcurrency))
        {
            await warm.RunAsync("warm", api, 2000, s.Senders, "", TimeSpan.FromMinutes(1));
            await warm.BroadcastAsync(api, 3, TimeSpan.FromMinutes(1));
            await warm.CloseAllAsync();
        }
        await Settle(api, dg, 0);
        var rssAtRest = server.RssBytes();
        var filesAtRest = server.OpenFiles();

        var started = Stopwatch.GetTimestamp();
        var cpuBefore = server.CpuSeconds();
        var progress = new Progress<int>(n => Console.Error.Write($"\r  connected {n}/{s.Devices}   "));
        await using var fleet = await DeviceFleet.ConnectAsync([server], s.Devices, "bench-", s.ConnectConcurrency, s.Devices >= 5000 ? progress : null);
        var connectSeconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var cpuPerConnect = (server.CpuSeconds() - cpuBefore) / s.Devices * 1e6;
        if (s.Devices >= 5000) Console.Error.WriteLine();
        await Task.Delay(TimeSpan.FromSeconds(2)); // let the server's allocations settle before reading its RSS (a benchmark, not a test)
        var perDevice = (server.RssBytes() - rssAtRest) / (double)s.Devices;
        if (s.Hold > TimeSpan.Zero)
        {
            Console.Error.WriteLine($"  holding {s.Devices} devices for {s.Hold.TotalSeconds} s (pid {server.Pid})");
            await Task.Delay(s.Hold);
        }
        if (s.Scenarios.Contains("connect"))
        {
            Add("connect", "connects/s", s.Devices / connectSeconds);
            Add("connect", "KiB/device", perDevice / 1024);
            Add("connect", "server CPU us/connect", cpuPerConnect);
            Console.Error.WriteLine($"  connect   {s.Devices / connectSeconds,10:F0} conn/s   {perDevice / 1024,6:F1} KiB/device   {cpuPerConnect,6:F0} µs CPU/connect");
        }

        if (s.Scenarios.Contains("fanout"))
        {
            var cpu = server.CpuSeconds();
            var (p50, p99, rate) = await fleet.BroadcastAsync(api, s.Broadcasts, TimeSpan.FromMinutes(2));
            Add("fanout", "deliveries/s", rate);
            Add("fanout", "server CPU us/delivery", (server.CpuSeconds() - cpu) / ((double)s.Broadcasts * s.Devices) * 1e6);
            Add("fanout", "p50 ms", p50);
            Add("fanout", "p99 ms", p99);
            // What the broadcasts left behind in each idle connection (buffers that writes borrowed and the pools kept),
            // read a while after them so a pool that gives blocks back in time gets the chance (Kestrel's did not, in 15 s).
            await Task.Delay(TimeSpan.FromSeconds(s.Devices >= 5000 ? 15 : 2));
            var afterBroadcast = (server.RssBytes() - rssAtRest) / (double)s.Devices;
            Add("fanout", "KiB/device after", afterBroadcast / 1024);
            Console.Error.WriteLine($"  fanout    {rate,10:F0} deliveries/s   p50 {p50,6:F1} ms  p99 {p99,6:F1} ms   {afterBroadcast / 1024,6:F1} KiB/device after");
        }

        if (s.Scenarios.Contains("targeted"))
        {
            var cpu = server.CpuSeconds();
            var r = await fleet.RunAsync("targeted", api, s.Messages, s.Senders, "", TimeSpan.FromMinutes(3));
            AddTargeted("targeted", r);
            Add("targeted", "server CPU us/message", (server.CpuSeconds() - cpu) / s.Messages * 1e6);
        }

        if (dg && s.Scenarios.Contains("batch"))
        {
            var r = await fleet.RunBatchAsync("batch", api, s.Messages, 4, s.BatchSize, TimeSpan.FromMinutes(3));
            AddTargeted("batch", r);
        }

        if (s.Scenarios.Contains("echo"))
        {
            var cpu = server.CpuSeconds();
            var (rate, p50, p99) = await Echo.RunAsync(server, s.EchoConnections, s.EchoRoundTrips, TimeSpan.FromMinutes(3));
            Add("echo", "round trips/s", rate);
            Add("echo", "server CPU us/round trip", (server.CpuSeconds() - cpu) / ((double)s.EchoConnections * s.EchoRoundTrips) * 1e6);
            Add("echo", "p50 ms", p50);
            Add("echo", "p99 ms", p99);
            Console.Error.WriteLine($"  echo      {rate,10:F0} round trips/s   p50 {p50,6:F2} ms  p99 {p99,6:F2} ms");
        }

        if (dg && s.Scenarios.Contains("d2d"))
        {
            var r = await DeviceToDevice.RunAsync(server, Math.Min(200, s.Devices), s.Messages, TimeSpan.FromMinutes(3));
            AddTargeted("d2d", r);
        }

        await fleet.CloseAllAsync();
        await fleet.DisposeAsync();

        if (s.Scenarios.Contains("churn"))
        {
            await Settle(api, dg, 0);
            var rssBefore = server.RssBytes();
            var filesBefore = server.OpenFiles();
            var cycles = await Churn.RunAsync(server, s.Churn, 50);
            var settled = await Settle(api, dg, 0);
            // Closed sockets leave the server's file table as their close completes: wait for that, bounded.
            var filesAfter = server.OpenFiles();
            for (var i = 0; i < 100 && filesAfter > filesBefore; i++)
            {
                await Task.Delay(100);
                filesAfter = server.OpenFiles();
            }
            await Task.Delay(TimeSpan.FromSeconds(2));
            var rssAfter = server.RssBytes();
            Add("churn", "cycles/s", cycles / s.Churn.TotalSeconds);
            Add("churn", "RSS change %", 100.0 * (rssAfter - rssBefore) / rssBefore);
            Add("churn", "open files change", filesAfter - filesBefore);
            Console.Error.WriteLine($"  churn     {cycles / s.Churn.TotalSeconds,10:F0} cycles/s   RSS {rssBefore / 1048576.0:F0} -> {rssAfter / 1048576.0:F0} MiB   files {filesBefore} -> {filesAfter} (at rest before the fleet: {filesAtRest})");
            if (!settled) failures.Add($"{server.Kind} round {round}: presence did not return to 0 after churn");
            if (filesAfter > filesBefore + 20) failures.Add($"{server.Kind} round {round}: {filesAfter - filesBefore} file handles more after churn");
        }

        void AddTargeted(string scenario, TargetedResult r)
        {
            Add(scenario, "messages/s", r.PerSecond);
            Add(scenario, "p50 ms", r.P50Ms);
            Add(scenario, "p99 ms", r.P99Ms);
            Add(scenario, "max ms", r.MaxMs);
            Add(scenario, "lost", r.Lost);
            Add(scenario, "duplicated", r.Duplicated);
            Add(scenario, "misrouted", r.Misrouted);
            Console.Error.WriteLine($"  {scenario,-9} {r.PerSecond,10:F0} msg/s   p50 {r.P50Ms,6:F1} ms  p99 {r.P99Ms,6:F1} ms  max {r.MaxMs,6:F1} ms  lost {r.Lost} dup {r.Duplicated} misrouted {r.Misrouted}");
            if (r.Lost + r.Duplicated + r.Misrouted > 0) failures.Add($"{server.Kind} round {round} {scenario}: lost {r.Lost}, duplicated {r.Duplicated}, misrouted {r.Misrouted}");
        }
    }

    /// <summary>DeviceGate: waits (bounded) until its presence shows <paramref name="connected"/> devices. The baseline has no such API.</summary>
    private static async Task<bool> Settle(HttpClient api, bool devicegate, int connected)
    {
        if (!devicegate) return true;
        var deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency * 20;
        while (Stopwatch.GetTimestamp() < deadline)
        {
            using var doc = JsonDocument.Parse(await api.GetStringAsync("api/stats"));
            if (doc.RootElement.GetProperty("nodes")[0].GetProperty("connectedDevices").GetInt32() == connected) return true;
            await Task.Delay(100);
        }
        return false;
    }

    private static void Report(List<Sample> samples, Settings s)
    {
        static double Median(IEnumerable<double> xs)
        {
            var sorted = xs.Order().ToArray();
            return sorted.Length == 0 ? double.NaN : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
        }
        var rounds = samples.Select(x => x.Round).Distinct().Count();
        Console.WriteLine();
        Console.WriteLine($"N = {s.Devices} devices, {s.Messages} targeted messages, {s.Senders} senders, {rounds} round(s) A B A B; medians; ratio = DeviceGate / baseline");
        Console.WriteLine();
        var json = new List<string>();
        var withNode = samples.Any(x => x.Kind == "node");
        Console.WriteLine(withNode ? "| scenario | metric | baseline | Node ws | DeviceGate | ratio | ratio to Node ws |" : "| scenario | metric | baseline | DeviceGate | ratio |");
        Console.WriteLine(withNode ? "|---|---|---|---|---|---|---|" : "|---|---|---|---|---|");
        foreach (var scenario in samples.Select(x => x.Scenario).Distinct())
        {
            var line = new Dictionary<string, object> { ["scenario"] = scenario, ["devices"] = s.Devices, ["rounds"] = rounds };
            foreach (var metric in samples.Where(x => x.Scenario == scenario).Select(x => x.Metric).Distinct())
            {
                double Of(string kind, string sc) => Median(samples.Where(x => x.Scenario == sc && x.Metric == metric && x.Kind == kind).Select(x => x.Value));
                var d = Median(samples.Where(x => x.Scenario == scenario && x.Metric == metric && x.Kind is not ("baseline" or "node")).Select(x => x.Value));
                // The batch path has no baseline of its own: it is held against the baselines' per-message targeted rate.
                var against = scenario == "batch" && metric == "messages/s" ? "targeted" : scenario;
                var b = Of("baseline", against);
                var n = Of("node", against);
                static double Ratio(double x, double y) => double.IsFinite(x) && double.IsFinite(y) && y != 0 ? x / y : double.NaN;
                static string R(double r) => double.IsNaN(r) ? "" : r.ToString("F2");
                var ratio = Ratio(d, b);
                var toNode = Ratio(d, n);
                Console.WriteLine(withNode
                    ? $"| {scenario} | {metric} | {Fmt(b)} | {Fmt(n)} | {Fmt(d)} | {R(ratio)} | {R(toNode)} |"
                    : $"| {scenario} | {metric} | {Fmt(b)} | {Fmt(d)} | {R(ratio)} |");
                var key = metric.Replace(" ", "_").Replace("/", "_per_").Replace("%", "pct");
                line[$"baseline_{key}"] = double.IsNaN(b) ? null! : Math.Round(b, 3);
                if (withNode) line[$"node_{key}"] = double.IsNaN(n) ? null! : Math.Round(n, 3);
                line[$"devicegate_{key}"] = double.IsNaN(d) ? null! : Math.Round(d, 3);
                if (!double.IsNaN(ratio)) line[$"ratio_{key}"] = Math.Round(ratio, 3);
                if (!double.IsNaN(toNode)) line[$"ratio_node_{key}"] = Math.Round(toNode, 3);
            }
            json.Add(JsonSerializer.Serialize(line));
        }
        Console.WriteLine();
        foreach (var l in json) Console.WriteLine(l);
    }

    private static string Fmt(double x) => double.IsNaN(x) ? "" : Math.Abs(x) >= 100 ? x.ToString("N0") : x.ToString("F1");
}
