using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using CsCheck;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Connections;

/// <summary>
/// Device upgrades answered at the connection level (issue 20), beside the same gateway with
/// <c>DeviceGate:WebSockets:ConnectionLevelUpgrade=false</c>: both paths answer every upgrade and every refusal alike
/// (status, the headers RFC 6455 asks for, the problem body), Kestrel's limits hold on both, the API is untouched,
/// and random or truncated handshakes never get anything but an HTTP status or a closed connection.
/// </summary>
public sealed class ConnectionLevelUpgradeTests : IAsyncLifetime
{
    private const string Key = "dGhlIHNhbXBsZSBub25jZQ==";
    private TestGateway _connection = null!;
    private TestGateway _pipeline = null!;

    private static Dictionary<string, string> Settings(bool connectionLevel) => new()
    {
        ["DeviceGate:WebSockets:ConnectionLevelUpgrade"] = connectionLevel ? "true" : "false",
        ["DeviceGate:Limits:ConnectsPerSecond"] = "100000",
        ["DeviceGate:Limits:ConnectsBurst"] = "100000",
        ["Kestrel:Limits:RequestHeadersTimeout"] = "00:00:02",
    };

    public async Task InitializeAsync()
    {
        _connection = await TestGateway.StartAsync(Settings(true));
        _pipeline = await TestGateway.StartAsync(Settings(false));
    }

    public async Task DisposeAsync()
    {
        await _connection.DisposeAsync();
        await _pipeline.DisposeAsync();
    }

    private static string Upgrade(string? key = Key, string version = "13", string connection = "Upgrade") =>
        $"Upgrade: websocket\r\nConnection: {connection}\r\n" + (key is null ? "" : $"Sec-WebSocket-Key: {key}\r\n") + $"Sec-WebSocket-Version: {version}\r\n";

    /// <summary>The request cases both paths must answer alike; {token:x} stands for a valid token of device x.</summary>
    public static TheoryData<string, string> Requests() => new()
    {
        { "device", "GET /ws?deviceId=p1 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token:p1}\r\n" + Upgrade() },
        { "envelope subprotocol", "GET /ws?deviceId=p2 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token:p2}\r\nSec-WebSocket-Protocol: other, devicegate.v1.json\r\n" + Upgrade() },
        { "access_token", "GET /ws?deviceId=p3&access_token={token:p3} HTTP/1.1\r\nHost: h\r\n" + Upgrade() },
        { "no deviceId", "GET /ws HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token:p1}\r\n" + Upgrade() },
        { "deviceId twice", "GET /ws?deviceId=a&deviceId=b HTTP/1.1\r\nHost: h\r\n" + Upgrade() },
        { "invalid id", "GET /ws?deviceId=bad%20id HTTP/1.1\r\nHost: h\r\n" + Upgrade() },
        { "server", "GET /ws?deviceId=server HTTP/1.1\r\nHost: h\r\n" + Upgrade() },
        { "foreign origin", "GET /ws?deviceId=p4 HTTP/1.1\r\nHost: h\r\nOrigin: https://evil.example\r\nAuthorization: Bearer {token:p4}\r\n" + Upgrade() },
        { "no token", "GET /ws?deviceId=p5 HTTP/1.1\r\nHost: h\r\n" + Upgrade() },
        { "bad token", "GET /ws?deviceId=p6 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer not.a.token\r\n" + Upgrade() },
        { "another device's token", "GET /ws?deviceId=p7 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token:p8}\r\n" + Upgrade() },
        { "not an upgrade", "GET /ws?deviceId=p9 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token:p9}\r\n" },
        { "no key", "GET /ws?deviceId=p9 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token:p9}\r\n" + Upgrade(key: null) },
        { "15-byte key", "GET /ws?deviceId=p9 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token:p9}\r\n" + Upgrade(key: Convert.ToBase64String(new byte[15])) },
        { "version 8", "GET /ws?deviceId=p9 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token:p9}\r\n" + Upgrade(version: "8") },
        { "no Connection: Upgrade", "GET /ws?deviceId=p9 HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {token:p9}\r\n" + Upgrade(connection: "keep-alive") },
        { "echo", "GET /ws/echo HTTP/1.1\r\nHost: h\r\n" + Upgrade() },
        { "echo, bad key", "GET /ws/echo HTTP/1.1\r\nHost: h\r\n" + Upgrade(key: "short") },
        { "echo, foreign origin", "GET /ws/echo HTTP/1.1\r\nHost: h\r\nOrigin: http://evil.example\r\n" + Upgrade() },
        { "NUL in a header", "GET /ws?deviceId=p9 HTTP/1.1\r\nHost: h\r\nX-Bad: a\0b\r\n" + Upgrade() },
        { "request line over 8 KiB", $"GET /ws?deviceId=p9&pad={new string('a', 9000)} HTTP/1.1\r\nHost: h\r\n" + Upgrade() },
        { "101 headers", "GET /ws/echo HTTP/1.1\r\nHost: h\r\n" + string.Concat(Enumerable.Range(0, 101).Select(i => $"X-{i}: v\r\n")) + Upgrade() },
        { "40 KiB of one header", "GET /ws/echo HTTP/1.1\r\nHost: h\r\nX-Big: " + new string('b', 40_000) + "\r\n" + Upgrade() },
        { "HTTP/2.0 in the request line", "GET /ws/echo HTTP/2.0\r\nHost: h\r\n" + Upgrade() },
        { "space before the colon", "GET /ws/echo HTTP/1.1\r\nHost : h\r\n" + Upgrade() },
    };

    [Theory]
    [MemberData(nameof(Requests))]
    public async Task Both_paths_answer_alike(string name, string request)
    {
        var viaConnection = await ExchangeAsync(_connection, request);
        var viaPipeline = await ExchangeAsync(_pipeline, request);
        Assert.True(viaConnection.Status == viaPipeline.Status, $"{name}: {viaConnection.Status} at the connection level, {viaPipeline.Status} through the pipeline");
        foreach (var header in new[] { "Upgrade", "Sec-WebSocket-Version", "Sec-WebSocket-Accept", "Sec-WebSocket-Protocol", "Retry-After" })
        {
            Assert.True(viaConnection.Header(header) == viaPipeline.Header(header), $"{name}: {header} is '{viaConnection.Header(header)}' at the connection level, '{viaPipeline.Header(header)}' through the pipeline");
        }
        if (viaPipeline.Body.Length > 0 && viaPipeline.Status != 101)
        {
            // Kestrel's own 4xx (malformed HTTP) have no body; the connection level adds a problem body to those.
            Assert.Equal(viaPipeline.Problem(), viaConnection.Problem());
            Assert.Equal("application/problem+json", viaConnection.Header("Content-Type"));
        }
    }

    [Fact]
    public async Task Upgrades_are_counted_by_path_and_the_api_and_keep_alive_connections_are_the_pipelines()
    {
        using var device = await _connection.ConnectAsync("counted");
        using var echo = new System.Net.WebSockets.ClientWebSocket();
        await echo.ConnectAsync(_connection.WsUri("ws/echo"), new CancellationTokenSource(Timeouts.Default).Token);
        await echo.SendTextAsync("hi");
        Assert.Equal("hi", await echo.ReceiveTextAsync());

        // An API request first, then an upgrade on the same keep-alive connection: the HTTP layer owns it, and answers 101.
        using var raw = await RawWebSocket.OpenAsync(_connection.BaseUri);
        await raw.WriteAsync(Encoding.ASCII.GetBytes($"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n"));
        var health = await ReadResponseAsync(raw.Stream);
        Assert.Equal(200, health.Status);
        await raw.WriteAsync(Encoding.ASCII.GetBytes($"GET /ws?deviceId=kept HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {_connection.Token("kept")}\r\n" + Upgrade() + "\r\n"));
        Assert.Equal(101, (await ReadResponseAsync(raw.Stream)).Status);

        var metrics = await _connection.Api.GetStringAsync("metrics");
        Assert.Equal(2, PrometheusText.Value(metrics, "devicegate_upgrades_total{path=\"connection\"}"));
        Assert.Equal(1, PrometheusText.Value(metrics, "devicegate_upgrades_total{path=\"http\"}"));
        var off = await _pipeline.Api.GetStringAsync("metrics");
        Assert.Equal(0, PrometheusText.Value(off, "devicegate_upgrades_total{path=\"connection\"}"));
    }

    [Fact]
    public async Task A_frame_sent_with_the_request_head_is_read_and_a_slow_head_gets_408()
    {
        using var raw = await RawWebSocket.OpenAsync(_connection.BaseUri);
        var head = Encoding.ASCII.GetBytes("GET /ws/echo HTTP/1.1\r\nHost: h\r\n" + Upgrade() + "\r\n");
        await raw.WriteAsync([.. head, .. RawWebSocket.Frame(0x1, "early"u8)]);
        Assert.StartsWith("HTTP/1.1 101", await raw.ReadHeadAsync());
        var frame = new byte[7];
        await raw.Stream.ReadExactlyAsync(frame).AsTask().WaitAsync(Timeouts.Default);
        Assert.Equal([0x81, 5, .. "early"u8], frame);

        using var slow = await RawWebSocket.OpenAsync(_connection.BaseUri);
        await slow.WriteAsync("GET /ws?deviceId=slow HTTP/1.1\r\nHost: h\r\n"u8.ToArray());
        Assert.StartsWith("HTTP/1.1 408", await slow.ReadHeadAsync());
    }

    [Fact]
    public async Task Random_and_truncated_handshakes_get_a_status_or_a_close_and_leave_nothing_behind()
    {
        var valid = Encoding.ASCII.GetBytes($"GET /ws?deviceId=prop HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {_connection.Token("prop")}\r\n" + Upgrade() + "\r\n");
        int[] expected = [101, 400, 401, 403, 404, 405, 408, 414, 426, 431, 505];
        var mutated = Gen.OneOf(
            Gen.Int[0, valid.Length - 1].Select(n => valid[..n]),
            Gen.Select(Gen.Int[7, valid.Length - 1], Gen.Byte, (at, b) => { var copy = valid.ToArray(); copy[at] = b; return copy; }),
            Gen.Select(Gen.Int[7, valid.Length - 1], Gen.Byte.Array[1, 40], (at, bytes) => (byte[])[.. valid[..at], .. bytes, .. valid[at..]]),
            Gen.Byte.Array[1, 64].Select(bytes => (byte[])[.. "GET /ws?"u8, .. bytes]));
        var answered = 0;
        await mutated.SampleAsync(async request =>
        {
            using var tcp = new TcpClient { NoDelay = true };
            await tcp.ConnectAsync(_connection.BaseUri.Host, _connection.BaseUri.Port).WaitAsync(Timeouts.Default);
            var stream = tcp.GetStream();
            await stream.WriteAsync(request);
            // The client sends nothing more: the server sees the end of the request, whatever it made of it.
            tcp.Client.Shutdown(SocketShutdown.Send);
            var response = await ReadResponseAsync(stream);
            if (response.Status == 0) return; // closed without an answer (a truncated head)
            Assert.Contains(response.Status, expected);
            answered++;
        }, iter: 300, threads: 1);
        Assert.True(answered > 0);

        // Nothing stayed registered, counted as connected, or half open, and real devices still connect.
        using var after = await _connection.ConnectAsync("after-property");
        await after.CloseCleanlyAsync();
        await ApiExtensions.EventuallyAsync(async () =>
            PrometheusText.Value(await _connection.Api.GetStringAsync("metrics"), "devicegate_connected_devices") == 0, "connected devices back to 0");
    }

    [Fact]
    public async Task A_connection_that_never_sent_a_byte_does_not_hold_up_shutdown()
    {
        await using var gw = await TestGateway.StartAsync(Settings(true));
        using var idle = new TcpClient { NoDelay = true };
        await idle.ConnectAsync(gw.BaseUri.Host, gw.BaseUri.Port).WaitAsync(Timeouts.Default);
        // Kestrel would wait for it until the host's shutdown timeout (30 s); a shutdown closes it at once instead.
        await gw.App.StopAsync().WaitAsync(TimeSpan.FromSeconds(10));
        var buffer = new byte[1];
        var read = await idle.GetStream().ReadAsync(buffer).AsTask().WaitAsync(Timeouts.Default);
        Assert.Equal(0, read);
    }

    private sealed record Response(int Status, string Head, byte[] Body)
    {
        public string Header(string name) => Head.Split("\r\n").Skip(1)
            .Where(l => l.StartsWith(name + ":", StringComparison.OrdinalIgnoreCase)).Select(l => l[(name.Length + 1)..].Trim()).FirstOrDefault() ?? "";

        public string Problem()
        {
            using var json = JsonDocument.Parse(Body);
            return string.Join("|", json.RootElement.EnumerateObject().OrderBy(p => p.Name, StringComparer.Ordinal).Select(p => $"{p.Name}={p.Value}"));
        }
    }

    private static async Task<Response> ExchangeAsync(TestGateway gw, string template)
    {
        var request = System.Text.RegularExpressions.Regex.Replace(template, @"\{token:([^}]+)\}", m => gw.Token(m.Groups[1].Value)) + "\r\n";
        using var tcp = new TcpClient { NoDelay = true };
        await tcp.ConnectAsync(gw.BaseUri.Host, gw.BaseUri.Port).WaitAsync(Timeouts.Default);
        var stream = tcp.GetStream();
        try
        {
            await stream.WriteAsync(Encoding.Latin1.GetBytes(request));
        }
        catch (IOException)
        {
            // Refused before the whole request was read: the answer is still there to read.
        }
        return await ReadResponseAsync(stream);
    }

    /// <summary>The response head and its Content-Length body; status 0 when the connection closed before a head.</summary>
    private static async Task<Response> ReadResponseAsync(Stream stream)
    {
        using var cts = new CancellationTokenSource(Timeouts.Default);
        var head = new List<byte>();
        var one = new byte[1];
        try
        {
            while (!(head.Count >= 4 && head[^4] == '\r' && head[^3] == '\n' && head[^2] == '\r' && head[^1] == '\n'))
            {
                if (await stream.ReadAsync(one, cts.Token) == 0) return new Response(0, Encoding.ASCII.GetString(head.ToArray()), []);
                head.Add(one[0]);
            }
        }
        catch (IOException)
        {
            return new Response(0, Encoding.ASCII.GetString(head.ToArray()), []);
        }
        var text = Encoding.ASCII.GetString(head.ToArray());
        var status = int.Parse(text.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        var response = new Response(status, text, []);
        if (response.Header("Transfer-Encoding") == "chunked")
        {
            // Read to the last chunk; the body itself does not matter here.
            var tail = new List<byte>();
            while (!(tail.Count >= 5 && Encoding.ASCII.GetString(tail.ToArray()[^5..]) == "0\r\n\r\n"))
            {
                if (await stream.ReadAsync(one, cts.Token) == 0) break;
                tail.Add(one[0]);
            }
            return response;
        }
        if (!int.TryParse(response.Header("Content-Length"), out var length) || length == 0) return response;
        var body = new byte[length];
        await stream.ReadExactlyAsync(body, cts.Token);
        return response with { Body = body };
    }
}
