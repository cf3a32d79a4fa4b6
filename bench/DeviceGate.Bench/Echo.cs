using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.WebSockets;

namespace DeviceGate.Bench;

/// <summary><c>echo</c>: C connections to /ws/echo, each doing R round trips of 64 bytes one after another.</summary>
internal static class Echo
{
    public static async Task<(double PerSecond, double P50Ms, double P99Ms)> RunAsync(ServerUnderTest server, int connections, int roundTrips, TimeSpan limit)
    {
        var sockets = new ClientWebSocket[connections];
        for (var i = 0; i < connections; i++)
        {
            sockets[i] = new ClientWebSocket();
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await sockets[i].ConnectAsync(new Uri(server.BaseUri.ToString().Replace("http", "ws") + "ws/echo"), SourceAddresses.Invoker(i), cts.Token);
        }
        using var stop = new CancellationTokenSource(limit);
        var latencies = new double[connections * roundTrips];
        var started = Stopwatch.GetTimestamp();
        await Task.WhenAll(sockets.Select((socket, c) => Task.Run(async () =>
        {
            var send = new byte[64];
            var receive = new byte[256];
            for (var i = 0; i < roundTrips; i++)
            {
                var t = Stopwatch.GetTimestamp();
                BinaryPrimitives.WriteInt64LittleEndian(send, t);
                await socket.SendAsync(send, WebSocketMessageType.Binary, true, stop.Token);
                ValueWebSocketReceiveResult r;
                var got = 0;
                do
                {
                    r = await socket.ReceiveAsync(receive.AsMemory(got), stop.Token);
                    got += r.Count;
                }
                while (!r.EndOfMessage);
                if (got != 64 || BinaryPrimitives.ReadInt64LittleEndian(receive) != t) throw new InvalidOperationException("echo returned something else");
                latencies[c * roundTrips + i] = Stopwatch.GetElapsedTime(t).TotalMilliseconds;
            }
        })));
        var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
        await Sockets.CloseAllAsync(sockets);
        foreach (var s in sockets) s.Dispose();
        Array.Sort(latencies);
        return (latencies.Length / elapsed, latencies[latencies.Length / 2], latencies[Math.Min(latencies.Length - 1, (int)(latencies.Length * 0.99))]);
    }
}
