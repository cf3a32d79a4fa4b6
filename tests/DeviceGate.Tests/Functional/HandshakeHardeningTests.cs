using System.Net.WebSockets;
using System.Text;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

/// <summary>Handshake floods and malformed upgrades (issue 13): cheap refusals cost no connect-rate tokens, RFC 6455 statuses.</summary>
public sealed class HandshakeHardeningTests : GatewayTest
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["DeviceGate:Limits:ConnectsPerSecond"] = "1",
        ["DeviceGate:Limits:ConnectsBurst"] = "3",
    };

    private const string Key = "dGhlIHNhbXBsZSBub25jZQ==";

    /// <summary>Sends one raw request and returns the response head.</summary>
    private async Task<string> RawAsync(string path, string headers)
    {
        using var raw = await RawWebSocket.OpenAsync(Gw.BaseUri);
        await raw.WriteAsync(Encoding.ASCII.GetBytes($"GET /{path} HTTP/1.1\r\nHost: {Gw.BaseUri.Authority}\r\n{headers}\r\n"));
        return await raw.ReadHeadAsync();
    }

    private static string Upgrade(string? key = Key, string version = "13") =>
        "Upgrade: websocket\r\nConnection: Upgrade\r\n" + (key is null ? "" : $"Sec-WebSocket-Key: {key}\r\n") + $"Sec-WebSocket-Version: {version}\r\n";

    private async Task<string> ScrapeAsync()
    {
        using var anonymous = new HttpClient { BaseAddress = Gw.BaseUri };
        return await anonymous.GetStringAsync("metrics");
    }

    [Fact]
    public async Task Refusals_that_cost_nothing_take_no_connect_rate_tokens_and_are_logged_once_per_interval()
    {
        for (var i = 0; i < 40; i++) Assert.StartsWith("HTTP/1.1 401", await RawAsync($"ws?deviceId=flood{i}", Upgrade()));
        for (var i = 0; i < 10; i++) Assert.StartsWith("HTTP/1.1 400", await RawAsync("ws?deviceId=bad%20id", Upgrade()));
        for (var i = 0; i < 10; i++) Assert.StartsWith("HTTP/1.1 426", await RawAsync($"ws?deviceId=plain&access_token={Gw.Token("plain")}", ""));

        // The burst of 3 is still whole: three real devices connect at once.
        var devices = new List<ClientWebSocket>();
        for (var i = 0; i < 3; i++) devices.Add(await Gw.ConnectAsync($"real-{i}"));
        Assert.All(devices, d => Assert.Equal(WebSocketState.Open, d.State));
        foreach (var d in devices) d.Dispose();

        var metrics = await ScrapeAsync();
        Assert.Equal(40, PrometheusText.Value(metrics, "devicegate_handshakes_refused_total{reason=\"token_missing\"}"));
        Assert.Equal(10, PrometheusText.Value(metrics, "devicegate_handshakes_refused_total{reason=\"not_upgrade\"}"));
        // One line per reason per 10 s, however many refusals.
        Assert.Single(Gw.Logs.Lines, l => l.Contains("[1003]", StringComparison.Ordinal) && l.Contains("missing token", StringComparison.Ordinal));
        Assert.Single(Gw.Logs.Lines, l => l.Contains("[1003]", StringComparison.Ordinal) && l.Contains("not a WebSocket upgrade", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("ws?deviceId=k1")]
    [InlineData("ws/echo")]
    public async Task A_missing_or_malformed_key_is_400_a_plain_request_426_and_an_unknown_version_426_naming_13(string path)
    {
        var auth = path.StartsWith("ws?", StringComparison.Ordinal) ? $"Authorization: Bearer {Gw.Token("k1")}\r\n" : "";
        Assert.StartsWith("HTTP/1.1 400", await RawAsync(path, auth + Upgrade(key: null)));
        Assert.StartsWith("HTTP/1.1 400", await RawAsync(path, auth + Upgrade(key: "not-base64!")));
        Assert.StartsWith("HTTP/1.1 400", await RawAsync(path, auth + Upgrade(key: Convert.ToBase64String(new byte[15]))));
        var plain = await RawAsync(path, auth);
        Assert.StartsWith("HTTP/1.1 426", plain);
        Assert.Contains("Upgrade: websocket", plain, StringComparison.OrdinalIgnoreCase);
        var version = await RawAsync(path, auth + Upgrade(version: "8"));
        Assert.StartsWith("HTTP/1.1 426", version);
        Assert.Contains("Sec-WebSocket-Version: 13", version, StringComparison.OrdinalIgnoreCase);
        Assert.StartsWith("HTTP/1.1 101", await RawAsync(path, auth + Upgrade()));
    }

    [Fact]
    public async Task Same_origin_means_the_same_scheme_host_and_port()
    {
        var token = Gw.Token("origin-dev");
        var authority = Gw.BaseUri.Authority;
        var https = await RawAsync("ws?deviceId=origin-dev", $"Authorization: Bearer {token}\r\nOrigin: https://{authority}\r\n" + Upgrade());
        Assert.StartsWith("HTTP/1.1 403", https);
        var otherPort = await RawAsync("ws?deviceId=origin-dev", $"Authorization: Bearer {token}\r\nOrigin: http://{Gw.BaseUri.Host}:1\r\n" + Upgrade());
        Assert.StartsWith("HTTP/1.1 403", otherPort);
        var same = await RawAsync("ws?deviceId=origin-dev", $"Authorization: Bearer {token}\r\nOrigin: http://{authority}\r\n" + Upgrade());
        Assert.StartsWith("HTTP/1.1 101", same);
    }
}
