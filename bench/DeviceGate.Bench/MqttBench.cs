using System.Buffers.Binary;
using System.CommandLine;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;

namespace DeviceGate.Bench;

/// <summary>
/// <c>mqtt</c>: N MQTT devices (MQTTnet clients over TCP) on DeviceGate and on Debian's mosquitto broker, in the same
/// run. Targeted: M 16-byte messages to random devices, through DeviceGate's API (32 senders) and through 32
/// publishing clients on mosquitto, at QoS 1 and QoS 0; fan-in: every device publishes to its events topic (QoS 1).
/// Figures: messages/s, end-to-end p50/p99, resident memory per connection; lost/duplicated must be 0 at QoS 1.
/// </summary>
internal static class MqttBench
{
    public static Command Create()
    {
        var devices = new Option<int>("--devices") { DefaultValueFactory = _ => 1000 };
        var messages = new Option<int>("--messages") { DefaultValueFactory = _ => 20_000 };
        var senders = new Option<int>("--senders") { DefaultValueFactory = _ => 32 };
        var warmup = new Option<int>("--warmup")
        {
            DefaultValueFactory = _ => 20_000,
            Description = "Messages sent before each measured targeted run, and publishes before fan-in, not counted (JIT tiering of a .NET server takes thousands of messages; mosquitto gets the same)",
        };
        var dll = new Option<string?>("--server-dll");
        var command = new Command("mqtt", "MQTT devices on DeviceGate against Debian's mosquitto broker: targeted QoS 1/0, fan-in, memory per connection.");
        foreach (var o in new Option[] { devices, messages, senders, warmup, dll }) command.Options.Add(o);
        command.SetAction(async (parse, ct) =>
        {
            var n = parse.GetValue(devices);
            var m = parse.GetValue(messages);
            var s = parse.GetValue(senders);
            var w = Math.Max(0, parse.GetValue(warmup));
            var rows = new List<(string Scenario, string Metric, double Mosquitto, double DeviceGate)>();
            var failures = new List<string>();

            var dg = await RunDeviceGateAsync(parse.GetValue(dll) ?? Scenarios.DefaultDll(), n, m, s, w, failures);
            var mq = await RunMosquittoAsync(n, m, s, w, failures);
            foreach (var key in dg.Keys.Where(mq.ContainsKey)) rows.Add((key.Split('|')[0], key.Split('|')[1], mq[key], dg[key]));

            Console.WriteLine();
            Console.WriteLine($"N = {n} MQTT devices, {m} targeted messages (after {w} not counted), {s} senders; ratio = DeviceGate / mosquitto");
            Console.WriteLine();
            Console.WriteLine("| scenario | metric | mosquitto | DeviceGate | ratio |");
            Console.WriteLine("|---|---|---|---|---|");
            foreach (var r in rows)
            {
                var ratio = r.Mosquitto == 0 ? "" : (r.DeviceGate / r.Mosquitto).ToString("F2", System.Globalization.CultureInfo.InvariantCulture);
                Console.WriteLine($"| {r.Scenario} | {r.Metric} | {r.Mosquitto:#,0.#} | {r.DeviceGate:#,0.#} | {ratio} |");
            }
            foreach (var f in failures) Console.Error.WriteLine("FAILED: " + f);
            return failures.Count == 0 ? 0 : 1;
        });
        return command;
    }

    private static async Task<Dictionary<string, double>> RunDeviceGateAsync(string dll, int n, int m, int senders, int warmup, List<string> failures)
    {
        var port = Scenarios.FreePort();
        string[] settings =
        [
            "--DeviceGate:Mqtt:Enabled=true", $"--DeviceGate:Mqtt:TcpPort={port}",
            "--DeviceGate:Limits:MaxConnections=200000", "--DeviceGate:Limits:ConnectsPerSecond=100000", "--DeviceGate:Limits:ConnectsBurst=100000",
            "--DeviceGate:Limits:DeviceMessagesPerSecond=1000000", "--DeviceGate:Limits:DeviceMessagesBurst=1000000",
        ];
        await using var server = await ServerUnderTest.StartAsync(dll, settings);
        Console.Error.WriteLine($"devicegate (pid {server.Pid}) mqtt on {port}");
        using var api = server.CreateApi();
        var figures = new Dictionary<string, double>();
        var rest = server.RssBytes();
        await using var fleet = await Fleet.ConnectAsync(port, n, id => server.Token(id), "dg-");
        await Task.Delay(TimeSpan.FromSeconds(2)); // let allocations settle before reading RSS (a benchmark, not a test)
        figures["connect|KiB/connection"] = (server.RssBytes() - rest) / 1024.0 / n;
        async Task Send(string device, byte[] payload)
        {
            using var content = new ByteArrayContent(payload);
            content.Headers.ContentType = new("application/octet-stream");
            using var response = await api.PostAsync($"api/devices/{device}/messages", content);
            if (response.StatusCode != HttpStatusCode.Accepted) throw new InvalidOperationException($"send: {(int)response.StatusCode}");
        }
        foreach (var qos in new[] { MqttQualityOfServiceLevel.AtLeastOnce, MqttQualityOfServiceLevel.AtMostOnce })
        {
            await fleet.SubscribeAsync(qos);
            // Warm-up (JIT, pools), not counted.
            if (warmup > 0) await fleet.MeasureAsync(warmup, Send, senders);
            Record(figures, $"targeted qos{(int)qos}", await fleet.MeasureAsync(m, Send, senders), qos, failures, "devicegate");
        }
        if (warmup >= n) await fleet.FanInAsync(warmup / n);
        figures["fan-in qos1|publishes/s"] = await fleet.FanInAsync(Math.Max(1, m / n));
        return figures;
    }

    private static async Task<Dictionary<string, double>> RunMosquittoAsync(int n, int m, int senders, int warmup, List<string> failures)
    {
        var port = Scenarios.FreePort();
        var dir = Directory.CreateTempSubdirectory("mosquitto-bench-").FullName;
        var conf = Path.Combine(dir, "mosquitto.conf");
        // The same shape as DeviceGate's defaults where mosquitto has a knob: 32 in flight, 1000 queued per client.
        File.WriteAllText(conf, $"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 32\nmax_queued_messages 1000\nlog_dest none\n");
        using var broker = Process.Start(new ProcessStartInfo("/usr/sbin/mosquitto", ["-c", conf]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false })!;
        var figures = new Dictionary<string, double>();
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while (true)
            {
                try
                {
                    using var probe = new TcpClient();
                    await probe.ConnectAsync(IPAddress.Loopback, port);
                    break;
                }
                catch (SocketException) when (DateTime.UtcNow < deadline)
                {
                    await Task.Delay(50);
                }
            }
            Console.Error.WriteLine($"mosquitto (pid {broker.Id}) on {port}");
            var rest = Rss(broker.Id);
            await using var fleet = await Fleet.ConnectAsync(port, n, _ => null, "mq-");
            await Task.Delay(TimeSpan.FromSeconds(2));
            figures["connect|KiB/connection"] = (Rss(broker.Id) - rest) / 1024.0 / n;
            var publishers = new IMqttClient[senders];
            for (var i = 0; i < senders; i++)
            {
                publishers[i] = new MqttClientFactory().CreateMqttClient();
                await publishers[i].ConnectAsync(new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", port).WithClientId($"publisher-{i}")
                    .WithProtocolVersion(MqttProtocolVersion.V500).Build());
            }
            try
            {
                foreach (var qos in new[] { MqttQualityOfServiceLevel.AtLeastOnce, MqttQualityOfServiceLevel.AtMostOnce })
                {
                    await fleet.SubscribeAsync(qos);
                    var next = 0;
                    Task Publish(string device, byte[] payload)
                    {
                        var publisher = publishers[(Interlocked.Increment(ref next) & int.MaxValue) % senders];
                        return publisher.PublishAsync(new MqttApplicationMessageBuilder().WithTopic($"devices/{device}/messages").WithPayload(payload)
                            .WithQualityOfServiceLevel(qos).Build());
                    }
                    if (warmup > 0) await fleet.MeasureAsync(warmup, Publish, senders);
                    Record(figures, $"targeted qos{(int)qos}", await fleet.MeasureAsync(m, Publish, senders), qos, failures, "mosquitto");
                }
            }
            finally
            {
                foreach (var p in publishers) p.Dispose();
            }
            if (warmup >= n) await fleet.FanInAsync(warmup / n);
            figures["fan-in qos1|publishes/s"] = await fleet.FanInAsync(Math.Max(1, m / n));
        }
        finally
        {
            broker.Kill();
            await broker.WaitForExitAsync();
            Directory.Delete(dir, recursive: true);
        }
        return figures;
    }

    private static void Record(Dictionary<string, double> figures, string scenario, Fleet.Result r, MqttQualityOfServiceLevel qos, List<string> failures, string server)
    {
        figures[$"{scenario}|messages/s"] = r.Rate;
        figures[$"{scenario}|p50 ms"] = r.P50;
        figures[$"{scenario}|p99 ms"] = r.P99;
        figures[$"{scenario}|lost"] = r.Lost;
        Console.Error.WriteLine($"  {server} {scenario}: {r.Rate:F0} msg/s p50 {r.P50:F1} ms p99 {r.P99:F1} ms lost {r.Lost} dup {r.Duplicated}");
        if (qos == MqttQualityOfServiceLevel.AtLeastOnce && r.Lost > 0) failures.Add($"{server} {scenario}: {r.Lost} lost");
    }

    private static long Rss(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }
        return 0;
    }

    /// <summary>N MQTT devices; each received message carries its send time and a sequence number.</summary>
    private sealed class Fleet : IAsyncDisposable
    {
        private readonly IMqttClient[] _clients;
        private readonly string[] _ids;
        private ConcurrentDictionary<long, int> _seen = new();
        private ConcurrentBag<double> _latencies = new();
        private int _received;
        private TaskCompletionSource _all = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _expected;
        private MqttQualityOfServiceLevel? _subscribed;

        private Fleet(IMqttClient[] clients, string[] ids)
        {
            _clients = clients;
            _ids = ids;
        }

        public readonly record struct Result(double Rate, double P50, double P99, int Lost, int Duplicated);

        public static async Task<Fleet> ConnectAsync(int port, int n, Func<string, string?> token, string prefix)
        {
            var clients = new IMqttClient[n];
            var ids = Enumerable.Range(0, n).Select(i => $"{prefix}{i}").ToArray();
            var fleet = new Fleet(clients, ids);
            using var gate = new SemaphoreSlim(100);
            await Task.WhenAll(Enumerable.Range(0, n).Select(async i =>
            {
                await gate.WaitAsync();
                try
                {
                    var c = new MqttClientFactory().CreateMqttClient();
                    c.ApplicationMessageReceivedAsync += e =>
                    {
                        fleet.OnMessage(System.Buffers.BuffersExtensions.ToArray(e.ApplicationMessage.Payload));
                        return Task.CompletedTask;
                    };
                    var b = new MqttClientOptionsBuilder().WithTcpServer("127.0.0.1", port).WithClientId(ids[i]).WithProtocolVersion(MqttProtocolVersion.V500)
                        .WithCleanSession().WithTimeout(TimeSpan.FromSeconds(30));
                    if (token(ids[i]) is { } t) b.WithCredentials("device", t);
                    var r = await c.ConnectAsync(b.Build());
                    if (r.ResultCode != MqttClientConnectResultCode.Success) throw new InvalidOperationException($"{ids[i]}: {r.ResultCode}");
                    clients[i] = c;
                }
                finally
                {
                    gate.Release();
                }
            }));
            return fleet;
        }

        public async Task SubscribeAsync(MqttQualityOfServiceLevel qos)
        {
            if (_subscribed == qos) return;
            _subscribed = qos;
            using var gate = new SemaphoreSlim(100);
            await Task.WhenAll(_clients.Select(async (c, i) =>
            {
                await gate.WaitAsync();
                try
                {
                    await c.SubscribeAsync(new MqttClientSubscribeOptionsBuilder().WithTopicFilter($"devices/{_ids[i]}/messages", qos).Build());
                }
                finally
                {
                    gate.Release();
                }
            }));
        }

        private void OnMessage(byte[] payload)
        {
            if (payload.Length < 16) return;
            var sent = BinaryPrimitives.ReadInt64LittleEndian(payload);
            var seq = BinaryPrimitives.ReadInt64LittleEndian(payload.AsSpan(8));
            if (_seen.AddOrUpdate(seq, 1, (_, v) => v + 1) > 1) return;
            _latencies.Add(Stopwatch.GetElapsedTime(sent).TotalMilliseconds);
            if (Interlocked.Increment(ref _received) == _expected) _all.TrySetResult();
        }

        public async Task<Result> MeasureAsync(int m, Func<string, byte[], Task> send, int senders)
        {
            _seen = new ConcurrentDictionary<long, int>();
            _latencies = new ConcurrentBag<double>();
            _received = 0;
            _expected = m;
            _all = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var started = Stopwatch.GetTimestamp();
            var next = -1;
            await Task.WhenAll(Enumerable.Range(0, senders).Select(async _ =>
            {
                var random = new Random();
                int i;
                while ((i = Interlocked.Increment(ref next)) < m)
                {
                    var payload = new byte[16];
                    BinaryPrimitives.WriteInt64LittleEndian(payload, Stopwatch.GetTimestamp());
                    BinaryPrimitives.WriteInt64LittleEndian(payload.AsSpan(8), i);
                    await send(_ids[random.Next(_ids.Length)], payload);
                }
            }));
            // QoS 0 may lose some: wait a bounded time for the rest, then count.
            await Task.WhenAny(_all.Task, Task.Delay(TimeSpan.FromSeconds(30)));
            var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            var sorted = _latencies.OrderBy(x => x).ToArray();
            double P(double q) => sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];
            return new Result(_seen.Count / seconds, P(0.5), P(0.99), m - _seen.Count, _seen.Values.Sum() - _seen.Count);
        }

        /// <summary>Every device publishes <paramref name="each"/> QoS 1 messages to its events topic, all at once: publishes/s.</summary>
        public async Task<double> FanInAsync(int each)
        {
            var started = Stopwatch.GetTimestamp();
            await Task.WhenAll(_clients.Select(async (c, i) =>
            {
                for (var k = 0; k < each; k++)
                {
                    await c.PublishAsync(new MqttApplicationMessageBuilder().WithTopic($"devices/{_ids[i]}/events").WithPayload("reading=21.5")
                        .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
                }
            }));
            return _clients.Length * each / Stopwatch.GetElapsedTime(started).TotalSeconds;
        }

        public async ValueTask DisposeAsync()
        {
            foreach (var c in _clients)
            {
                if (c is null) continue;
                try
                {
                    await c.DisconnectAsync();
                }
                catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException)
                {
                }
                c.Dispose();
            }
        }
    }
}
