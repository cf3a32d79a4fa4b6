using System.Net;
using System.Net.Sockets;

namespace DeviceGate.Bench;

/// <summary>
/// Spreads client sockets over loopback source addresses 127.0.0.2, 127.0.0.3, ... : past about 14,000 connections
/// from one address the kernel's search for a free ephemeral port gets slow. Device i uses address i mod Count.
/// </summary>
internal static class SourceAddresses
{
    private static HttpMessageInvoker[] _invokers = Create(8);

    public static int Count => _invokers.Length;

    public static void Use(int count) => _invokers = Create(Math.Max(1, count));

    public static HttpMessageInvoker Invoker(int i) => _invokers[i % _invokers.Length];

    private static HttpMessageInvoker[] Create(int count) => Enumerable.Range(0, count).Select(k =>
    {
        var source = new IPAddress(new byte[] { 127, 0, 0, (byte)(2 + k) });
        var handler = new SocketsHttpHandler
        {
            PooledConnectionLifetime = TimeSpan.Zero,
            ConnectCallback = async (context, ct) =>
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    socket.Bind(new IPEndPoint(source, 0));
                    await socket.ConnectAsync(context.DnsEndPoint, ct);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        return new HttpMessageInvoker(handler);
    }).ToArray();
}
