using System.Diagnostics;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace DeviceGate.Bench;

/// <summary>
/// A server under load: one the tool started (Release build, own temp data folder, loopback, ephemeral port), or an
/// already running one speaking DeviceGate's contract that it only attaches to (<see cref="Attach"/>).
/// </summary>
internal sealed partial class ServerUnderTest : IAsyncDisposable
{
    private readonly Process? _process;
    private readonly string? _dataDir;
    private readonly int _pid;

    private ServerUnderTest(Process? process, string? dataDir, Uri baseUri, string apiKey, string secret, int pid = 0)
    {
        _process = process;
        _dataDir = dataDir;
        BaseUri = baseUri;
        ApiKey = apiKey;
        Secret = secret;
        _pid = process?.Id ?? pid;
    }

    public Uri BaseUri { get; }
    public string ApiKey { get; }
    public string Secret { get; }

    /// <summary>The server's process id (0 when attached without one: memory and file figures are then not read).</summary>
    public int Pid => _pid;

    /// <summary>A running server at <paramref name="baseUri"/>: devices get tokens signed with <paramref name="secret"/>.</summary>
    public static ServerUnderTest Attach(Uri baseUri, string apiKey, string secret, int pid) =>
        new(null, null, baseUri, apiKey, secret, pid) { Kind = "external" };

    /// <summary>Which server this is: <c>devicegate</c>, <c>baseline</c> (Kestrel) or <c>node</c> (Node ws).</summary>
    public string Kind { get; private init; } = "devicegate";

    /// <summary>Resident memory of the server process, from /proc (bytes).</summary>
    public long RssBytes()
    {
        if (Pid == 0) return 0;
        foreach (var line in File.ReadLines($"/proc/{Pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal)) return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        }
        return 0;
    }

    /// <summary>CPU time the server process has used so far (user + system, from /proc/&lt;pid&gt;/stat; seconds).</summary>
    public double CpuSeconds()
    {
        if (Pid == 0) return 0;
        var stat = File.ReadAllText($"/proc/{Pid}/stat");
        // Fields after the command name (which is in parentheses and may hold spaces): utime and stime are 14 and 15.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11], System.Globalization.CultureInfo.InvariantCulture) + long.Parse(fields[12], System.Globalization.CultureInfo.InvariantCulture)) / 100.0;
    }

    /// <summary>Open file descriptors of the server process (sockets included).</summary>
    public int OpenFiles() => Pid == 0 ? 0 : Directory.GetFiles($"/proc/{Pid}/fd").Length;

    /// <summary>The baseline server (bench/Baseline): same routes, no auth, nothing else.</summary>
    public static async Task<ServerUnderTest> StartBaselineAsync(string dll)
    {
        // Devices send the same Authorization header to both servers (same request sizes); the baseline ignores it.
        var secret = Convert.ToHexString(RandomNumberGenerator.GetBytes(32));
        var s = await StartProcessAsync(dll, ["--urls", "http://127.0.0.1:0"], secret, "none");
        return new ServerUnderTest(s.Process, s.DataDir, s.Uri, "none", secret) { Kind = "baseline" };
    }

    /// <summary>The Node baseline (bench/Baseline.Node: Node's http server and the ws package, the same routes and shape).</summary>
    public static async Task<ServerUnderTest> StartNodeBaselineAsync(string script)
    {
        if (!Directory.Exists(Path.Combine(Path.GetDirectoryName(script)!, "node_modules", "ws")))
        {
            throw new InvalidOperationException($"the Node baseline needs its package: npm ci --prefix {Path.GetDirectoryName(script)}");
        }
        var secret = Convert.ToHexString(RandomNumberGenerator.GetBytes(32));
        var s = await StartProcessAsync(script, ["--urls", "http://127.0.0.1:0"], secret, "none", "node");
        return new ServerUnderTest(s.Process, s.DataDir, s.Uri, "none", secret) { Kind = "node" };
    }

    public static Task<ServerUnderTest> StartAsync(string dll, params string[] extra) =>
        StartAsync(dll, Convert.ToHexString(RandomNumberGenerator.GetBytes(32)), Convert.ToHexString(RandomNumberGenerator.GetBytes(24)), extra);

    /// <summary>Starts a node with the given secret and key (nodes of one cluster share them).</summary>
    public static async Task<ServerUnderTest> StartAsync(string dll, string secret, string key, params string[] extra)
    {
        var s = await StartProcessAsync(dll, new[] { "serve", "--urls", "http://127.0.0.1:0", $"--DeviceGate:Auth:TokenSecret={secret}", $"--DeviceGate:Auth:ApiKeys:0={key}",
            "--Logging:LogLevel:Default=Warning", "--Logging:LogLevel:Microsoft.Hosting.Lifetime=Information" }.Concat(extra), secret, key);
        return new ServerUnderTest(s.Process, s.DataDir, s.Uri, key, secret);
    }

    private static async Task<(Process Process, string DataDir, Uri Uri)> StartProcessAsync(string dll, IEnumerable<string> args, string secret, string key, string host = "dotnet")
    {
        var dataDir = Directory.CreateTempSubdirectory("devicegate-bench-").FullName;
        var info = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = dataDir };
        info.ArgumentList.Add(dll);
        foreach (var a in args) info.ArgumentList.Add(a);
        var process = Process.Start(info)!;
        var listening = new TaskCompletionSource<Uri>(TaskCreationOptions.RunContinuationsAsynchronously);
        process.OutputDataReceived += (_, e) =>
        {
            var m = e.Data is null ? null : Listening().Match(e.Data);
            if (m is { Success: true }) listening.TrySetResult(new Uri(m.Groups[1].Value + "/"));
        };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var uri = await listening.Task.WaitAsync(TimeSpan.FromSeconds(30));
        return (process, dataDir, uri);
    }

    public HttpClient CreateApi()
    {
        var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 256 }) { BaseAddress = BaseUri, Timeout = TimeSpan.FromSeconds(30) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ApiKey);
        return http;
    }

    public string Token(string device) => new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
    {
        Claims = new Dictionary<string, object> { ["sub"] = device },
        SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(Secret)), SecurityAlgorithms.HmacSha256),
    });

    public async ValueTask DisposeAsync()
    {
        if (_process is null) return; // attached, not ours to stop
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }
        _process.Dispose();
        try
        {
            Directory.Delete(_dataDir!, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    [GeneratedRegex(@"Now listening on: (http://[^\s]+)")]
    private static partial Regex Listening();
}
