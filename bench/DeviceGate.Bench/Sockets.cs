using System.Net.WebSockets;

namespace DeviceGate.Bench;

internal static class Sockets
{
    /// <summary>Closes each socket cleanly (1000), at most 5 s each, ignoring the ones already gone, and disposes it.</summary>
    public static async Task CloseAllAsync(IEnumerable<ClientWebSocket> sockets)
    {
        foreach (var s in sockets)
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await s.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, cts.Token);
            }
            catch (Exception e) when (e is WebSocketException or OperationCanceledException)
            {
            }
        }
    }
}
