using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace DeviceGate.Tests.Infrastructure;

/// <summary>
/// Debian's nginx as a reverse proxy on loopback, configured with the block docs/operations.md documents (read from
/// that file), with its listen ports, upstream and certificate paths pointed at this test's.
/// </summary>
public sealed partial class NginxProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _dir;

    private NginxProcess(Process process, string dir, int httpPort, int httpsPort)
    {
        _process = process;
        _dir = dir;
        HttpPort = httpPort;
        HttpsPort = httpsPort;
    }

    public int HttpPort { get; }
    public int HttpsPort { get; }
    public Uri Http => new($"http://127.0.0.1:{HttpPort}/");
    public Uri Ws => new($"ws://127.0.0.1:{HttpPort}/");
    public Uri Wss => new($"wss://127.0.0.1:{HttpsPort}/");

    /// <summary>The ```nginx block under "### nginx" in docs/operations.md.</summary>
    public static string DocumentedBlock()
    {
        var docs = File.ReadAllText(Path.Combine(Repository.Root, "docs", "operations.md"));
        var section = docs[docs.IndexOf("### nginx", StringComparison.Ordinal)..];
        var match = NginxBlock().Match(section);
        Assert.True(match.Success, "docs/operations.md has no ```nginx block under ### nginx");
        return match.Groups[1].Value;
    }

    public static async Task<NginxProcess> StartAsync(Uri upstream, string certificatePem, string keyPem, Func<string, string>? adjust = null)
    {
        var dir = TempFolder.Create();
        File.WriteAllText(Path.Combine(dir, "tls.pem"), certificatePem);
        File.WriteAllText(Path.Combine(dir, "tls.key"), keyPem);
        var (http, https) = (FreePort(), FreePort());
        var block = DocumentedBlock()
            .Replace("server 127.0.0.1:8080;", $"server 127.0.0.1:{upstream.Port};", StringComparison.Ordinal)
            .Replace("listen 80;", $"listen 127.0.0.1:{http};", StringComparison.Ordinal)
            .Replace("listen 443 ssl;", $"listen 127.0.0.1:{https} ssl;", StringComparison.Ordinal)
            .Replace("/etc/devicegate/tls.pem", Path.Combine(dir, "tls.pem"), StringComparison.Ordinal)
            .Replace("/etc/devicegate/tls.key", Path.Combine(dir, "tls.key"), StringComparison.Ordinal);
        if (adjust is not null) block = adjust(block);
        var user = Environment.UserName == "root" ? "user root;\n" : "";
        File.WriteAllText(Path.Combine(dir, "nginx.conf"), $$"""
            {{user}}worker_processes 1;
            error_log {{dir}}/error.log warn;
            pid {{dir}}/nginx.pid;
            events { worker_connections 512; }
            http {
                access_log off;
                client_body_temp_path {{dir}}/body;
                proxy_temp_path {{dir}}/proxy;
                fastcgi_temp_path {{dir}}/fastcgi;
                uwsgi_temp_path {{dir}}/uwsgi;
                scgi_temp_path {{dir}}/scgi;
            {{block}}
            }
            """);
        var info = new ProcessStartInfo(File.Exists("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx")
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "-p", dir, "-c", Path.Combine(dir, "nginx.conf"), "-g", "daemon off;" }) info.ArgumentList.Add(a);
        var process = Process.Start(info)!;
        var nginx = new NginxProcess(process, dir, http, https);
        await ApiExtensions.EventuallyAsync(async () =>
        {
            if (process.HasExited) throw new InvalidOperationException($"nginx exited: {await process.StandardError.ReadToEndAsync()} {ReadLog(dir)}");
            try
            {
                using var probe = new TcpClient();
                await probe.ConnectAsync(IPAddress.Loopback, https);
                return true;
            }
            catch (SocketException)
            {
                return false;
            }
        }, "nginx listening");
        return nginx;
    }

    private static string ReadLog(string dir) => File.Exists(Path.Combine(dir, "error.log")) ? File.ReadAllText(Path.Combine(dir, "error.log")) : "";

    private static int FreePort() => Loopback.FreePort();

    [GeneratedRegex("```nginx\\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex NginxBlock();

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync(new CancellationTokenSource(Timeouts.Default).Token);
        }
        _process.Dispose();
        TempFolder.Delete(_dir);
    }
}
