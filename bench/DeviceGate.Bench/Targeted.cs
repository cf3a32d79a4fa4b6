using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.WebSockets;

namespace DeviceGate.Bench;

/// <summary>Result of one targeted run: throughput, end-to-end latency and correctness counts.</summary>
internal sealed record TargetedResult(string Name, int Messages, double PerSecond, double P50Ms, double P99Ms, double MaxMs, int Lost, int Duplicated, int Misrouted);

/// <summary>
/// N connected raw devices, each with one reader for the whole session; runs come and go. Each payload carries its
/// sequence number, target and send time, so receivers can check loss, duplication and routing.
/// </summary>
internal sealed class DeviceFleet : IAsyncDisposable
{
    private readonly ClientWebSocket[] _sockets;
    private readonly Task[] _readers;
    private readonly CancellationTokenSource _stop = new();
    private Run? _run;
    private BroadcastRun? _broadcast;
    private const int BroadcastMarker = -1;

    private sealed class BroadcastRun(int expected)
    {
        private int _remaining = expected;
        public readonly TaskCompletionSource Done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Received()
        {
            if (Interlocked.Decrement(ref _remaining) == 0) Done.TrySetResult();
        }
    }

    /// <summary>Broadcasts one after another, each once the previous reached every device; times until all N got it.</summary>
    public async Task<(double P50Ms, double P99Ms, double DeliveriesPerSecond)> BroadcastAsync(HttpClient api, int rounds, TimeSpan limit)
    {
        var times = new List<double>();
        var started = Stopwatch.GetTimestamp();
        for (var i = 0; i < rounds; i++)
        {
            var run = new BroadcastRun(Count);
            Volatile.Write(ref _broadcast, run);
            var payload = new byte[100];
            BinaryPrimitives.WriteInt32LittleEndian(payload, BroadcastMarker);
            var content = new ByteArrayContent(payload);
            content.Headers.ContentType = new("application/octet-stream");
            var sent = Stopwatch.GetTimestamp();
            using (var response = await api.PostAsync("api/broadcast", content)) response.EnsureSuccessStatusCode();
            await run.Done.Task.WaitAsync(limit);
            times.Add(Stopwatch.GetElapsedTime(sent).TotalMilliseconds);
        }
        Volatile.Write(ref _broadcast, null);
        var total = Stopwatch.GetElapsedTime(started).TotalSeconds;
        times.Sort();
        return (times[times.Count / 2], times[Math.Min(times.Count - 1, (int)(0.99 * times.Count))], rounds * (double)Count / total);
    }

    private DeviceFleet(ClientWebSocket[] sockets, string prefix, Run? run = null)
    {
        _sockets = sockets;
        Prefix = prefix;
        _run = run;
        _readers = sockets.Select((s, i) => Task.Run(() => ReadAsync(s, i))).ToArray();
    }

    public string Prefix { get; }
    public int Count => _sockets.Length;

    public static Task<DeviceFleet> ConnectAsync(ServerUnderTest server, int devices, string prefix, int concurrency = 100) =>
        ConnectAsync([server], devices, prefix, concurrency);

    /// <summary>Device i connects to server i mod count (devices spread over a cluster's nodes).</summary>
    public static Task<DeviceFleet> ConnectAsync(ServerUnderTest[] servers, int devices, string prefix, int concurrency = 100, IProgress<int>? progress = null) =>
        ConnectAsync(servers, devices, prefix, concurrency, progress, null);

    private static async Task<DeviceFleet> ConnectAsync(ServerUnderTest[] servers, int devices, string prefix, int concurrency, IProgress<int>? progress, Run? run)
    {
        var sockets = new ClientWebSocket[devices];
        using var gate = new SemaphoreSlim(concurrency);
        var done = 0;
        await Task.WhenAll(Enumerable.Range(0, devices).Select(async i =>
        {
            await gate.WaitAsync();
            try
            {
                var server = servers[i % servers.Length];
                var s = new ClientWebSocket();
                s.Options.SetRequestHeader("Authorization", "Bearer " + server.Token($"{prefix}{i}"));
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                await s.ConnectAsync(new Uri(server.BaseUri.ToString().Replace("http", "ws") + $"ws?deviceId={prefix}{i}"), SourceAddresses.Invoker(i), cts.Token);
                sockets[i] = s;
                if (Interlocked.Increment(ref done) % 1000 == 0) progress?.Report(done);
            }
            finally
            {
                gate.Release();
            }
        }));
        return new DeviceFleet(sockets, prefix, run);
    }

    private async Task ReadAsync(ClientWebSocket socket, int index)
    {
        var buffer = new byte[256];
        try
        {
            while (true)
            {
                var r = await socket.ReceiveAsync(buffer, _stop.Token);
                if (r.MessageType == WebSocketMessageType.Close) return;
                if (r.Count >= 16 && BinaryPrimitives.ReadInt32LittleEndian(buffer) == BroadcastMarker) Volatile.Read(ref _broadcast)?.Received();
                else if (r.Count >= 16) Volatile.Read(ref _run)?.Received(buffer, index);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or WebSocketException)
        {
        }
    }

    private sealed class Run(int messages)
    {
        public readonly int[] Counts = new int[messages];
        public readonly ConcurrentBag<double> Latencies = [];
        public int Misrouted;
        public int Remaining = messages;
        public readonly TaskCompletionSource Done = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public void Received(byte[] buffer, int index)
        {
            var seq = BinaryPrimitives.ReadInt32LittleEndian(buffer);
            if ((uint)seq >= (uint)Counts.Length) return;
            Latencies.Add(Stopwatch.GetElapsedTime(BinaryPrimitives.ReadInt64LittleEndian(buffer.AsSpan(8))).TotalMilliseconds);
            if (BinaryPrimitives.ReadInt32LittleEndian(buffer.AsSpan(4)) != index) Interlocked.Increment(ref Misrouted);
            if (Interlocked.Increment(ref Counts[seq]) == 1 && Interlocked.Decrement(ref Remaining) == 0) Done.TrySetResult();
        }
    }

    /// <summary>S concurrent API senders post M messages to random devices; waits (bounded) until all arrived.</summary>
    public async Task<TargetedResult> RunAsync(string name, HttpClient api, int messages, int senders, string query, TimeSpan limit)
    {
        var run = new Run(messages);
        Volatile.Write(ref _run, run);
        using var stop = new CancellationTokenSource(limit);
        var next = -1;
        var started = Stopwatch.GetTimestamp();
        var sending = Enumerable.Range(0, senders).Select(s => Task.Run(async () =>
        {
            var random = new Random(s);
            int seq;
            while ((seq = Interlocked.Increment(ref next)) < messages && !stop.IsCancellationRequested)
            {
                var target = random.Next(Count);
                var content = Payload(seq, target);
                using var response = await api.PostAsync($"api/devices/{Prefix}{target}/messages{query}", content, stop.Token);
                if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"send {seq}: HTTP {(int)response.StatusCode}");
            }
        })).ToArray();
        return await FinishAsync(name, run, sending, started, stop.Token);
    }

    /// <summary>A 16-byte binary message: its sequence number, its target's index and the time it was sent.</summary>
    private static ByteArrayContent Payload(int seq, int target)
    {
        var payload = new byte[16];
        BinaryPrimitives.WriteInt32LittleEndian(payload, seq);
        BinaryPrimitives.WriteInt32LittleEndian(payload.AsSpan(4), target);
        BinaryPrimitives.WriteInt64LittleEndian(payload.AsSpan(8), Stopwatch.GetTimestamp());
        var content = new ByteArrayContent(payload);
        content.Headers.ContentType = new("application/octet-stream");
        return content;
    }

    /// <summary>Waits (bounded by <paramref name="stop"/>) until every message arrived, then sums up the run.</summary>
    private async Task<TargetedResult> FinishAsync(string name, Run run, Task[] sending, long started, CancellationToken stop)
    {
        await Task.WhenAll(sending);
        await Task.WhenAny(run.Done.Task, Task.Delay(Timeout.Infinite, stop).ContinueWith(_ => { }, TaskScheduler.Default));
        var elapsed = Stopwatch.GetElapsedTime(started);
        Volatile.Write(ref _run, null);
        var sorted = run.Latencies.OrderBy(x => x).ToArray();
        double Pct(double p) => sorted.Length == 0 ? double.NaN : sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];
        return new TargetedResult(name, run.Counts.Length, run.Counts.Length / elapsed.TotalSeconds, Pct(0.50), Pct(0.99), sorted.LastOrDefault(),
            run.Counts.Count(c => c == 0), run.Counts.Count(c => c > 1), run.Misrouted);
    }

    /// <summary>Like <see cref="RunAsync"/> through <c>POST /api/messages/batch</c>: S senders post batches of B items.</summary>
    public async Task<TargetedResult> RunBatchAsync(string name, HttpClient api, int messages, int senders, int batchSize, TimeSpan limit)
    {
        var run = new Run(messages);
        Volatile.Write(ref _run, run);
        using var stop = new CancellationTokenSource(limit);
        var next = 0;
        var started = Stopwatch.GetTimestamp();
        var sending = Enumerable.Range(0, senders).Select(s => Task.Run(async () =>
        {
            var random = new Random(1000 + s);
            var payload = new byte[16];
            while (!stop.IsCancellationRequested)
            {
                var first = Interlocked.Add(ref next, batchSize) - batchSize;
                if (first >= messages) break;
                var count = Math.Min(batchSize, messages - first);
                var body = new System.Buffers.ArrayBufferWriter<byte>(count * 64);
                using (var w = new System.Text.Json.Utf8JsonWriter(body))
                {
                    w.WriteStartArray();
                    for (var seq = first; seq < first + count; seq++)
                    {
                        var target = random.Next(Count);
                        BinaryPrimitives.WriteInt32LittleEndian(payload, seq);
                        BinaryPrimitives.WriteInt32LittleEndian(payload.AsSpan(4), target);
                        BinaryPrimitives.WriteInt64LittleEndian(payload.AsSpan(8), Stopwatch.GetTimestamp());
                        w.WriteStartObject();
                        w.WriteString("device", $"{Prefix}{target}");
                        w.WriteBase64String("dataBase64", payload);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                }
                var content = new ByteArrayContent(body.WrittenSpan.ToArray());
                content.Headers.ContentType = new("application/json");
                using var response = await api.PostAsync("api/messages/batch", content, stop.Token);
                if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"batch at {first}: HTTP {(int)response.StatusCode}");
            }
        })).ToArray();
        return await FinishAsync(name, run, sending, started, stop.Token);
    }

    /// <summary>
    /// Durable sends (<c>?ttl=60</c>) to devices that are offline, then those devices connect: how fast the API
    /// stores them, and how long until every message arrived once the devices came (delivery on reconnect).
    /// </summary>
    public static async Task<(double AcceptedPerSecond, double DeliveredPerSecond, int Lost, int Duplicated, int Misrouted)> OfflineThenConnectAsync(
        ServerUnderTest server, HttpClient api, int devices, int messages, int senders, TimeSpan limit)
    {
        const string prefix = "offline-";
        var next = -1;
        var started = Stopwatch.GetTimestamp();
        await Task.WhenAll(Enumerable.Range(0, senders).Select(s => Task.Run(async () =>
        {
            var random = new Random(500 + s);
            int seq;
            while ((seq = Interlocked.Increment(ref next)) < messages)
            {
                var target = random.Next(devices);
                var content = Payload(seq, target);
                using var response = await api.PostAsync($"api/devices/{prefix}{target}/messages?ttl=60", content);
                if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"offline send {seq}: HTTP {(int)response.StatusCode}");
            }
        })));
        var accepted = messages / Stopwatch.GetElapsedTime(started).TotalSeconds;
        var run = new Run(messages);
        var connecting = Stopwatch.GetTimestamp();
        await using var fleet = await ConnectAsync([server], devices, prefix, 200, null, run);
        try
        {
            await run.Done.Task.WaitAsync(limit);
        }
        catch (TimeoutException)
        {
        }
        var delivered = messages / Stopwatch.GetElapsedTime(connecting).TotalSeconds;
        return (accepted, delivered, run.Counts.Count(c => c == 0), run.Counts.Count(c => c > 1), run.Misrouted);
    }

    /// <summary>Closes every connection cleanly (1000), bounded; the readers end with the close.</summary>
    public async Task CloseAllAsync(int concurrency = 200)
    {
        using var gate = new SemaphoreSlim(concurrency);
        await Task.WhenAll(_sockets.Select(async s =>
        {
            await gate.WaitAsync();
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                await s.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, cts.Token);
            }
            catch (Exception e) when (e is WebSocketException or OperationCanceledException)
            {
            }
            finally
            {
                gate.Release();
            }
        }));
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        await Task.WhenAll(_readers);
        foreach (var s in _sockets) s.Dispose();
    }
}
