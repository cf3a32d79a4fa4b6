using System.Net;
using System.Net.WebSockets;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

public sealed class LimitTests
{
    private static async Task<(int Status, string? RetryAfter)> TryConnectAsync(TestGateway gw, string id, string? forwardedFor = null)
    {
        var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        socket.Options.SetRequestHeader("Authorization", "Bearer " + gw.Token(id));
        if (forwardedFor is not null) socket.Options.SetRequestHeader("X-Forwarded-For", forwardedFor);
        try
        {
            await socket.ConnectAsync(gw.WsUri($"ws?deviceId={id}"), new CancellationTokenSource(Timeouts.Default).Token);
            return (101, null);
        }
        catch (WebSocketException)
        {
            var retry = socket.HttpResponseHeaders?.TryGetValue("Retry-After", out var values) == true ? values.FirstOrDefault() : null;
            return ((int)socket.HttpStatusCode, retry);
        }
    }

    [Fact]
    public async Task The_connection_cap_answers_503_with_retry_after()
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string> { ["DeviceGate:Limits:MaxConnections"] = "2" });
        using var a = await gw.ConnectAsync("cap-a");
        using var b = await gw.ConnectAsync("cap-b");
        var (status, retry) = await TryConnectAsync(gw, "cap-c");
        Assert.Equal(503, status);
        Assert.NotNull(retry);
        await a.CloseCleanlyAsync();
        await ApiExtensions.EventuallyAsync(async () => (await TryConnectAsync(gw, "cap-c")).Status == 101, "a place freed up");
    }

    [Fact]
    public async Task The_connect_rate_bucket_spreads_a_reconnect_storm()
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string>
        {
            ["DeviceGate:Limits:ConnectsPerSecond"] = "10",
            ["DeviceGate:Limits:ConnectsBurst"] = "5",
        });
        var results = new List<(int Status, string? RetryAfter)>();
        for (var i = 0; i < 8; i++) results.Add(await TryConnectAsync(gw, $"storm-{i}"));
        Assert.True(results.Count(r => r.Status == 101) >= 5);
        Assert.Contains(results, r => r.Status == 503 && r.RetryAfter is not null);
        using var text = await gw.Api.GetAsync("metrics");
        Assert.Contains("devicegate_handshakes_refused_total{reason=\"connect_rate\"}", await text.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task The_per_address_cap_answers_429_and_believes_only_known_proxies()
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string>
        {
            ["DeviceGate:Limits:MaxConnectionsPerIp"] = "1",
            ["DeviceGate:Network:KnownProxies:0"] = "127.0.0.1",
        });
        // Behind a known proxy each device is told apart by X-Forwarded-For.
        using var first = new ClientWebSocket();
        first.Options.SetRequestHeader("Authorization", "Bearer " + gw.Token("ip-1"));
        first.Options.SetRequestHeader("X-Forwarded-For", "203.0.113.1");
        await first.ConnectAsync(gw.WsUri("ws?deviceId=ip-1"), new CancellationTokenSource(Timeouts.Default).Token);
        Assert.Equal(101, (await TryConnectAsync(gw, "ip-2", "203.0.113.2")).Status);
        var (status, retry) = await TryConnectAsync(gw, "ip-3", "203.0.113.1");
        Assert.Equal(429, status);
        Assert.NotNull(retry);
    }

    [Fact]
    public async Task Without_known_proxies_forwarded_for_is_ignored()
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string> { ["DeviceGate:Limits:MaxConnectionsPerIp"] = "1" });
        using var first = await gw.ConnectAsync("spoof-1");
        // A client cannot escape the per-address cap by claiming another address.
        Assert.Equal(429, (await TryConnectAsync(gw, "spoof-2", "198.51.100.7")).Status);
    }

    [Fact]
    public async Task An_envelope_flood_is_answered_rate_limited_then_closed_with_1008()
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string>
        {
            ["DeviceGate:Limits:DeviceMessagesPerSecond"] = "5",
            ["DeviceGate:Limits:DeviceMessagesBurst"] = "5",
        });
        using var flooder = await gw.ConnectEnvelopeAsync("flooder");
        using var calm = await gw.ConnectAsync("calm");
        var sending = Task.Run(async () =>
        {
            try
            {
                for (var i = 0; i < 200 && flooder.State == WebSocketState.Open; i++) await flooder.SendJsonAsync(new { type = "send", to = "server", data = i });
            }
            catch (WebSocketException)
            {
            }
        });
        var sawRateLimited = false;
        while (true)
        {
            var m = await flooder.ReceiveMessageAsync();
            if (m.Type == WebSocketMessageType.Close) break;
            if (m.Text.Contains("\"rate_limited\"", StringComparison.Ordinal)) sawRateLimited = true;
        }
        Assert.True(sawRateLimited);
        Assert.Equal((WebSocketCloseStatus)1008, flooder.CloseStatus);
        Assert.Equal("rate_limited", flooder.CloseStatusDescription);
        await sending;
        await gw.Api.PostTextAsync("api/devices/calm/messages", "unaffected");
        Assert.Equal("unaffected", await calm.ReceiveTextAsync());
    }

    [Fact]
    public async Task A_raw_device_over_its_rate_is_slowed_down_and_loses_nothing()
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string>
        {
            ["DeviceGate:Limits:DeviceMessagesPerSecond"] = "20",
            ["DeviceGate:Limits:DeviceMessagesBurst"] = "5",
        });
        await using var events = await SseClient.OpenAsync(gw.Api, "api/events?device=raw-fast");
        using var fast = await gw.ConnectAsync("raw-fast");
        var started = System.Diagnostics.Stopwatch.StartNew();
        for (var i = 0; i < 30; i++) await fast.SendTextAsync($"m{i}");
        var seen = new List<string>();
        while (seen.Count < 30)
        {
            var e = await events.NextAsync();
            if (e.Event == "message") seen.Add(e.Data.Str("data"));
        }
        // Every message, in order: 5 at once, the other 25 at 20/s (about 1.25 s; reading paused meanwhile).
        Assert.Equal(Enumerable.Range(0, 30).Select(i => $"m{i}"), seen);
        Assert.True(started.Elapsed >= TimeSpan.FromSeconds(1), $"{started.Elapsed}: the rate did not hold");
        Assert.Equal(WebSocketState.Open, fast.State);
        var metrics = await (await gw.Api.GetAsync("metrics")).Content.ReadAsStringAsync();
        Assert.True(PrometheusText.Value(metrics, "devicegate_rate_limited_messages_total") >= 20);
    }

    [Fact]
    public async Task A_raw_device_held_to_its_rate_past_the_bound_is_closed_1008()
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string>
        {
            ["DeviceGate:Limits:DeviceMessagesPerSecond"] = "5",
            ["DeviceGate:Limits:DeviceMessagesBurst"] = "5",
            ["DeviceGate:Limits:ThrottledCloseAfter"] = "00:00:01",
        });
        using var flooder = await gw.ConnectAsync("raw-flooder");
        var closing = flooder.ReceiveCloseAsync();
        try
        {
            for (var i = 0; i < 200 && !closing.IsCompleted; i++) await flooder.SendTextAsync($"m{i}");
        }
        catch (WebSocketException)
        {
        }
        Assert.Equal((1008, "rate_limited"), await closing);
    }

    [Fact]
    public async Task The_api_rate_limit_answers_429_when_turned_on()
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string> { ["DeviceGate:Limits:ApiRequestsPerSecond"] = "3" });
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 10; i++) statuses.Add((await gw.Api.GetAsync("api/devices")).StatusCode);
        Assert.Contains(HttpStatusCode.TooManyRequests, statuses);
        Assert.Equal(HttpStatusCode.OK, statuses[0]);
        // Health is not an API route: never limited.
        Assert.Equal(HttpStatusCode.OK, (await gw.Api.GetAsync("healthz")).StatusCode);
    }

    [Fact]
    public async Task Revoked_tokens_are_refused_and_the_live_connection_is_closed_even_after_a_restart()
    {
        var dir = TempFolder.Create();
        try
        {
            string oldToken;
            await using (var gw = await TestGateway.StartAsync(dataPath: dir))
            {
                oldToken = gw.Token("revoked");
                using var device = new ClientWebSocket();
                device.Options.SetRequestHeader("Authorization", "Bearer " + oldToken);
                await device.ConnectAsync(gw.WsUri("ws?deviceId=revoked"), new CancellationTokenSource(Timeouts.Default).Token);
                Assert.Equal(HttpStatusCode.NoContent, (await gw.Api.PostAsync("api/devices/revoked/revoke-tokens", null)).StatusCode);
                Assert.Equal((1008, "token_revoked"), await device.ReceiveCloseAsync());
                Assert.Equal(401, await StatusWithTokenAsync(gw, oldToken));
            }
            await using var again = await TestGateway.StartAsync(dataPath: dir);
            Assert.Equal(401, await StatusWithTokenAsync(again, oldToken));
            // A token minted after the revocation works at once (our tokens carry iat to the millisecond).
            Assert.Equal(101, await StatusWithTokenAsync(again, again.Token("revoked")));
        }
        finally
        {
            TempFolder.Delete(dir);
        }
    }

    private static async Task<int> StatusWithTokenAsync(TestGateway gw, string token)
    {
        using var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        socket.Options.SetRequestHeader("Authorization", "Bearer " + token);
        try
        {
            await socket.ConnectAsync(gw.WsUri("ws?deviceId=revoked"), new CancellationTokenSource(Timeouts.Default).Token);
            return 101;
        }
        catch (WebSocketException)
        {
            return (int)socket.HttpStatusCode;
        }
    }

    [Fact]
    public async Task Compression_when_enabled_limits_the_decompressed_size()
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string>
        {
            ["DeviceGate:WebSockets:EnableCompression"] = "true",
            ["DeviceGate:Limits:MaxMessageBytes"] = "10000",
        });
        using var socket = new ClientWebSocket();
        socket.Options.DangerousDeflateOptions = new WebSocketDeflateOptions();
        await socket.ConnectAsync(gw.WsUri("ws/echo"), new CancellationTokenSource(Timeouts.Default).Token);
        var fits = new string('z', 9000);
        await socket.SendTextAsync(fits);
        Assert.Equal(fits, await socket.ReceiveTextAsync());
        // 100 KB of one letter compresses to a few hundred bytes on the wire; the limit still applies to the 100 KB.
        await socket.SendTextAsync(new string('z', 100_000));
        Assert.Equal((1009, "too_big"), await socket.ReceiveCloseAsync());
    }
}
