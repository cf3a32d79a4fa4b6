using System.Net.WebSockets;

namespace DeviceGate.Bench;

/// <summary><c>churn</c>: W workers connect a device, close it cleanly, and again, for a fixed time.</summary>
internal static class Churn
{
    public static async Task<int> RunAsync(ServerUnderTest server, TimeSpan duration, int workers)
    {
        using var stop = new CancellationTokenSource(duration);
        var cycles = 0;
        await Task.WhenAll(Enumerable.Range(0, workers).Select(w => Task.Run(async () =>
        {
            var buffer = new byte[64];
            for (var n = 0; !stop.IsCancellationRequested; n++)
            {
                // Real devices come back under their own ids: 20 ids per worker, reused (a fresh id every cycle
                // would measure how many devices the gateway remembers, not whether connections leave cleanly).
                var id = $"churn-{w}-{n % 20}";
                using var socket = new ClientWebSocket();
                socket.Options.SetRequestHeader("Authorization", "Bearer " + server.Token(id));
                using var bounded = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                await socket.ConnectAsync(new Uri(server.BaseUri.ToString().Replace("http", "ws") + $"ws?deviceId={id}"), SourceAddresses.Invoker(w + n), bounded.Token);
                await socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, bounded.Token);
                // Wait for the server's close so the connection is really gone before the next one.
                while (socket.State != WebSocketState.Closed && (await socket.ReceiveAsync(buffer, bounded.Token)).MessageType != WebSocketMessageType.Close)
                {
                }
                Interlocked.Increment(ref cycles);
            }
        })));
        return cycles;
    }
}
