using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace DeviceGate.Bench;

/// <summary>
/// <c>d2d</c>: K envelope devices (devicegate.v1.json) send M messages in all to random others; each payload carries
/// its sequence number, target and send time. DeviceGate only: the baseline has no envelopes.
/// </summary>
internal static class DeviceToDevice
{
    public static async Task<TargetedResult> RunAsync(ServerUnderTest server, int devices, int messages, TimeSpan limit)
    {
        var sockets = new ClientWebSocket[devices];
        for (var i = 0; i < devices; i++)
        {
            var s = new ClientWebSocket();
            s.Options.AddSubProtocol("devicegate.v1.json");
            s.Options.SetRequestHeader("Authorization", "Bearer " + server.Token($"d2d-{i}"));
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await s.ConnectAsync(new Uri(server.BaseUri.ToString().Replace("http", "ws") + $"ws?deviceId=d2d-{i}"), SourceAddresses.Invoker(i), cts.Token);
            sockets[i] = s;
        }
        var counts = new int[messages];
        var latencies = new ConcurrentBag<double>();
        var misrouted = 0;
        var remaining = messages;
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var stop = new CancellationTokenSource(limit);
        var readers = sockets.Select((socket, index) => Task.Run(async () =>
        {
            var buffer = new byte[4096];
            try
            {
                while (true)
                {
                    var r = await socket.ReceiveAsync(buffer, stop.Token);
                    if (r.MessageType == WebSocketMessageType.Close) return;
                    using var doc = JsonDocument.Parse(buffer.AsMemory(0, r.Count));
                    if (doc.RootElement.GetProperty("type").GetString() != "message") continue;
                    var data = doc.RootElement.GetProperty("data");
                    var seq = data.GetProperty("s").GetInt32();
                    latencies.Add(Stopwatch.GetElapsedTime(data.GetProperty("t").GetInt64()).TotalMilliseconds);
                    if (data.GetProperty("d").GetInt32() != index) Interlocked.Increment(ref misrouted);
                    if (Interlocked.Increment(ref counts[seq]) == 1 && Interlocked.Decrement(ref remaining) == 0) done.TrySetResult();
                }
            }
            catch (Exception e) when (e is WebSocketException or OperationCanceledException)
            {
            }
        })).ToArray();
        var started = Stopwatch.GetTimestamp();
        // Each device sends its share; the gateway allows a burst of 400 per device, then 200 a second.
        await Task.WhenAll(sockets.Select((socket, index) => Task.Run(async () =>
        {
            var random = new Random(index);
            for (var seq = index; seq < messages; seq += devices)
            {
                var target = random.Next(devices - 1);
                if (target >= index) target++;
                var json = "{\"type\":\"send\",\"to\":\"d2d-" + target + "\",\"data\":{\"s\":" + seq + ",\"d\":" + target + ",\"t\":" + Stopwatch.GetTimestamp() + "}}";
                await socket.SendAsync(Encoding.UTF8.GetBytes(json), WebSocketMessageType.Text, true, stop.Token);
            }
        })));
        await Task.WhenAny(done.Task, Task.Delay(Timeout.Infinite, stop.Token).ContinueWith(_ => { }, TaskScheduler.Default));
        var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
        await Sockets.CloseAllAsync(sockets);
        await stop.CancelAsync();
        await Task.WhenAll(readers);
        foreach (var s in sockets) s.Dispose();
        var sorted = latencies.Order().ToArray();
        double Pct(double p) => sorted.Length == 0 ? double.NaN : sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];
        return new TargetedResult("d2d", messages, messages / elapsed, Pct(0.5), Pct(0.99), sorted.LastOrDefault(),
            counts.Count(c => c == 0), counts.Count(c => c > 1), misrouted);
    }
}
