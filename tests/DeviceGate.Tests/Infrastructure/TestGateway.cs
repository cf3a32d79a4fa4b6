using System.Net.Http.Headers;
using System.Net.WebSockets;
using DeviceGate.Auth;
using DeviceGate.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace DeviceGate.Tests.Infrastructure;

/// <summary>A real gateway in this process: Kestrel on 127.0.0.1, an ephemeral port and its own data folder.</summary>
public sealed class TestGateway : IAsyncDisposable
{
    public const string ApiKey = "test-api-key-0123456789abcdef";
    public const string Secret = "test-secret-that-is-long-enough-0123456789abcdef";

    private readonly bool _ownsDataPath;

    private TestGateway(WebApplication app, string dataPath, bool ownsDataPath, CapturingLoggerProvider logs)
    {
        _ownsDataPath = ownsDataPath;
        App = app;
        DataPath = dataPath;
        Logs = logs;
        BaseUri = new Uri(app.Urls.First().Replace("[::]", "127.0.0.1") + "/");
        Api = new HttpClient { BaseAddress = BaseUri, Timeout = Timeouts.Default };
        Api.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ApiKey);
    }

    public WebApplication App { get; }
    public string DataPath { get; }
    public CapturingLoggerProvider Logs { get; }
    public Uri BaseUri { get; }

    /// <summary>An HttpClient that sends the test API key.</summary>
    /// <remarks>A data folder passed in by the test outlives the gateway (restart tests); one made here is deleted with it.</remarks>
    public HttpClient Api { get; }

    public static async Task<TestGateway> StartAsync(IReadOnlyDictionary<string, string>? settings = null, string? dataPath = null, bool configureSecrets = true,
        Action<WebApplicationBuilder>? configure = null)
    {
        var owns = dataPath is null;
        dataPath ??= TempFolder.Create();
        var args = new List<string> { "--urls", "http://127.0.0.1:0", $"--DeviceGate:Store:Path={dataPath}" };
        if (configureSecrets)
        {
            args.Add($"--DeviceGate:Auth:TokenSecret={Secret}");
            args.Add($"--DeviceGate:Auth:ApiKeys:0={ApiKey}");
        }
        foreach (var (key, value) in settings ?? new Dictionary<string, string>()) args.Add($"--{key}={value}");
        var logs = new CapturingLoggerProvider();
        var app = GatewayHost.Build(args.ToArray(), b =>
        {
            b.Logging.ClearProviders();
            b.Logging.SetMinimumLevel(LogLevel.Trace);
            b.Logging.AddProvider(logs);
            configure?.Invoke(b);
        });
        await app.StartAsync().WaitAsync(Timeouts.Default);
        return new TestGateway(app, dataPath, owns, logs);
    }

    /// <summary>
    /// How this run's gateways answer device upgrades, as <c>devicegate_upgrades_total{path}</c> names it: test.sh runs
    /// the functional suite a second time with <c>DeviceGate__WebSockets__ConnectionLevelUpgrade=false</c>.
    /// </summary>
    public static string UpgradePath =>
        string.Equals(Environment.GetEnvironmentVariable("DeviceGate__WebSockets__ConnectionLevelUpgrade"), "false", StringComparison.OrdinalIgnoreCase) ? "http" : "connection";

    public string Token(string deviceId, TimeSpan? ttl = null) => App.Services.GetRequiredService<DeviceTokens>().Mint(deviceId, ttl);

    /// <summary>A token signed with <see cref="Secret"/>, for a gateway in another process started with it (no app to ask).</summary>
    public static string MintWithSecret(string deviceId, TimeSpan? ttl = null) =>
        new DeviceTokens(GatewaySecrets.Load(new DeviceGate.Configuration.AuthOptions { TokenSecret = Secret, ApiKeys = [ApiKey] }, "unused"), TimeProvider.System)
            .Mint(deviceId, ttl);

    public Uri WsUri(string pathAndQuery) => new(new Uri(BaseUri.ToString().Replace("http://", "ws://")), pathAndQuery);

    /// <summary>Connects a device with a valid token (in the Authorization header).</summary>
    public async Task<ClientWebSocket> ConnectAsync(string deviceId)
    {
        var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + Token(deviceId));
        using var cts = new CancellationTokenSource(Timeouts.Default);
        await socket.ConnectAsync(WsUri($"ws?deviceId={Uri.EscapeDataString(deviceId)}"), cts.Token);
        return socket;
    }

    public async ValueTask DisposeAsync()
    {
        Api.Dispose();
        try
        {
            await App.StopAsync().WaitAsync(TimeSpan.FromSeconds(30));
        }
        finally
        {
            await App.DisposeAsync();
            if (_ownsDataPath) TempFolder.Delete(DataPath);
        }
    }
}

public static class Timeouts
{
    /// <summary>Upper bound for any single await in a test; generous because CI machines stall.</summary>
    public static readonly TimeSpan Default = TimeSpan.FromSeconds(20);
}

public static class Loopback
{
    /// <summary>A TCP port on 127.0.0.1 that was free a moment ago, for a server the test starts.</summary>
    public static int FreePort()
    {
        var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        probe.Start();
        var port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return port;
    }
}

public static class TempFolder
{
    public static string Create()
    {
        var path = Path.Combine(Path.GetTempPath(), "devicegate-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(path);
        return path;
    }

    public static void Delete(string path)
    {
        try
        {
            Directory.Delete(path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
