using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace DeviceGate.Tests.Infrastructure;

/// <summary>
/// A real redis-server on a loopback port (installed by .ci/run). <see cref="Shared"/> serves tests that only need
/// a Redis (each uses its own key prefix); tests that stop and restart Redis start their own.
/// </summary>
public sealed class RedisServer : IDisposable
{
    private static readonly Lazy<RedisServer> LazyShared = new(() =>
    {
        var server = Start();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => server.Dispose();
        return server;
    });

    private readonly string _dir;
    private readonly bool _persistent;
    private Process? _process;

    private RedisServer(int port, string dir, bool persistent)
    {
        Port = port;
        _dir = dir;
        _persistent = persistent;
    }

    public static RedisServer Shared => LazyShared.Value;

    public int Port { get; }

    /// <summary>A StackExchange.Redis connection string that retries while the server is away.</summary>
    public string Configuration => $"127.0.0.1:{Port},abortConnect=false,connectTimeout=2000,syncTimeout=2000,asyncTimeout=2000";

    /// <summary>With <paramref name="persistent"/>, AOF with fsync on every write: what the no-loss promise needs.</summary>
    public static RedisServer Start(bool persistent = false)
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var server = new RedisServer(port, TempFolder.Create(), persistent);
        server.Launch();
        return server;
    }

    /// <summary>(Re)starts redis-server on the same port; returns once it answers PING.</summary>
    public void Launch()
    {
        var info = new ProcessStartInfo("redis-server") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", _persistent ? "yes" : "no", "--appendfsync", "always", "--dir", _dir })
        {
            info.ArgumentList.Add(a);
        }
        _process = Process.Start(info) ?? throw new InvalidOperationException("redis-server did not start (is it installed?)");
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow + Timeouts.Default;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                using var tcp = new TcpClient();
                tcp.Connect(IPAddress.Loopback, Port);
                var stream = tcp.GetStream();
                stream.Write("PING\r\n"u8);
                var buffer = new byte[16];
                var n = stream.Read(buffer);
                if (n > 0 && buffer[0] == (byte)'+') return;
            }
            catch (SocketException)
            {
            }
            Thread.Sleep(50);
        }
        throw new TimeoutException($"redis-server did not answer on port {Port}");
    }

    /// <summary>Stops redis-server (SIGKILL: an outage, not a shutdown).</summary>
    public void Stop()
    {
        if (_process is { HasExited: false } p)
        {
            p.Kill();
            p.WaitForExit(10_000);
        }
    }

    public void Dispose()
    {
        Stop();
        TempFolder.Delete(_dir);
    }
}
