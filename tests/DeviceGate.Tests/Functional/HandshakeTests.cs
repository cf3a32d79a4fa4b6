using System.Net;
using System.Net.WebSockets;
using System.Text;
using DeviceGate.Tests.Infrastructure;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace DeviceGate.Tests.Functional;

public sealed class HandshakeTests : GatewayTest
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["DeviceGate:WebSockets:AllowedOrigins:0"] = "https://dashboard.example.com",
    };

    /// <summary>Tries an upgrade and returns the HTTP status (101 when it upgraded).</summary>
    private async Task<int> StatusOfAsync(string pathAndQuery, string? bearer = null, string? origin = null)
    {
        using var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        if (bearer is not null) socket.Options.SetRequestHeader("Authorization", "Bearer " + bearer);
        if (origin is not null) socket.Options.SetRequestHeader("Origin", origin);
        using var cts = new CancellationTokenSource(Timeouts.Default);
        try
        {
            await socket.ConnectAsync(Gw.WsUri(pathAndQuery), cts.Token);
            return (int)socket.HttpStatusCode;
        }
        catch (WebSocketException)
        {
            return (int)socket.HttpStatusCode;
        }
    }

    [Theory]
    [InlineData("ws")]
    [InlineData("ws?deviceId=")]
    [InlineData("ws?deviceId=.")]
    [InlineData("ws?deviceId=..")]
    [InlineData("ws?deviceId=-abc")]
    [InlineData("ws?deviceId=a%20b")]
    [InlineData("ws?deviceId=a%2Fb")]
    [InlineData("ws?deviceId=server")]
    [InlineData("ws?deviceId=a&deviceId=b")]
    public async Task Bad_or_missing_id_is_refused_with_400(string pathAndQuery)
    {
        Assert.Equal(400, await StatusOfAsync(pathAndQuery, Gw.Token("a")));
    }

    [Fact]
    public async Task Id_longer_than_128_is_refused_and_128_is_accepted()
    {
        var max = new string('x', 128);
        Assert.Equal(400, await StatusOfAsync("ws?deviceId=" + max + "y", Gw.Token(max + "y")));
        Assert.Equal(101, await StatusOfAsync("ws?deviceId=" + max, Gw.Token(max)));
    }

    [Fact]
    public async Task Query_key_is_case_insensitive_and_ids_are_case_sensitive()
    {
        Assert.Equal(101, await StatusOfAsync("ws?deviceID=Dev.1_a:b-c", Gw.Token("Dev.1_a:b-c")));
        Assert.Equal(403, await StatusOfAsync("ws?deviceId=dev.1_a:b-c", Gw.Token("Dev.1_a:b-c")));
    }

    [Fact]
    public async Task Missing_invalid_expired_or_foreign_tokens_are_refused_with_401()
    {
        Assert.Equal(401, await StatusOfAsync("ws?deviceId=d1"));
        Assert.Equal(401, await StatusOfAsync("ws?deviceId=d1", "not-a-jwt"));
        Assert.Equal(401, await StatusOfAsync("ws?deviceId=d1", Sign("d1", "another-secret-that-is-long-enough-0123456789")));
        Assert.Equal(401, await StatusOfAsync("ws?deviceId=d1", Sign("d1", TestGateway.Secret, exp: DateTimeOffset.UtcNow.AddMinutes(-5))));
        Assert.Equal(401, await StatusOfAsync("ws?deviceId=d1", Sign("d1", TestGateway.Secret, nbf: DateTimeOffset.UtcNow.AddMinutes(5))));
        Assert.Equal(401, await StatusOfAsync("ws?deviceId=d1", Sign("d1", TestGateway.Secret, algorithm: SecurityAlgorithms.HmacSha384)));
        Assert.Equal(401, await StatusOfAsync("ws?deviceId=d1", Unsigned("d1")));
    }

    [Fact]
    public async Task Skew_of_less_than_30_seconds_is_tolerated_and_tokens_without_exp_are_accepted()
    {
        Assert.Equal(101, await StatusOfAsync("ws?deviceId=d1", Sign("d1", TestGateway.Secret, exp: DateTimeOffset.UtcNow.AddSeconds(-10))));
        Assert.Equal(101, await StatusOfAsync("ws?deviceId=d2", Sign("d2", TestGateway.Secret)));
    }

    [Fact]
    public async Task Token_for_another_device_is_refused_with_403()
    {
        Assert.Equal(403, await StatusOfAsync("ws?deviceId=d1", Gw.Token("d2")));
    }

    [Fact]
    public async Task Token_in_query_works_and_header_wins_over_query()
    {
        Assert.Equal(101, await StatusOfAsync("ws?deviceId=q1&access_token=" + Gw.Token("q1")));
        Assert.Equal(401, await StatusOfAsync("ws?deviceId=q2&access_token=" + Gw.Token("q2"), bearer: "garbage"));
        Assert.Equal(101, await StatusOfAsync("ws?deviceId=q3&access_token=garbage", bearer: Gw.Token("q3")));
    }

    [Fact]
    public async Task Foreign_browser_origins_are_refused_with_403_same_and_allowed_origins_pass()
    {
        var self = $"http://{Gw.BaseUri.Authority}";
        Assert.Equal(403, await StatusOfAsync("ws?deviceId=o1", Gw.Token("o1"), origin: "https://evil.example.com"));
        Assert.Equal(403, await StatusOfAsync("ws?deviceId=o1", Gw.Token("o1"), origin: "null"));
        Assert.Equal(101, await StatusOfAsync("ws?deviceId=o2", Gw.Token("o2"), origin: self));
        Assert.Equal(101, await StatusOfAsync("ws?deviceId=o3", Gw.Token("o3"), origin: "https://dashboard.example.com"));
        Assert.Equal(403, await StatusOfAsync("ws/echo", origin: "https://evil.example.com"));
    }

    [Fact]
    public async Task Every_origin_is_allowed_with_a_star()
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string> { ["DeviceGate:WebSockets:AllowedOrigins:0"] = "*" });
        using var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + gw.Token("o4"));
        socket.Options.SetRequestHeader("Origin", "https://anything.example.org");
        await socket.ConnectAsync(gw.WsUri("ws?deviceId=o4"), new CancellationTokenSource(Timeouts.Default).Token);
        Assert.Equal(WebSocketState.Open, socket.State);
    }

    [Fact]
    public async Task Unknown_subprotocols_get_raw_mode_with_none_selected()
    {
        using var socket = new ClientWebSocket();
        socket.Options.SetRequestHeader("Authorization", "Bearer " + Gw.Token("p1"));
        socket.Options.AddSubProtocol("mqtt");
        await socket.ConnectAsync(Gw.WsUri("ws?deviceId=p1"), new CancellationTokenSource(Timeouts.Default).Token);
        Assert.Null(socket.SubProtocol);
        Assert.Equal(HttpStatusCode.Accepted, (await Gw.Api.PostTextAsync("api/devices/p1/messages", "hi")).StatusCode);
        Assert.Equal("hi", await socket.ReceiveTextAsync());
    }

    [Fact]
    public async Task Plain_http_request_gets_a_clear_status_never_101()
    {
        using var plain = new HttpClient { BaseAddress = Gw.BaseUri };
        Assert.Equal(HttpStatusCode.BadRequest, (await plain.GetAsync("ws")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await plain.GetAsync("ws?deviceId=h1")).StatusCode);
        Assert.Equal(HttpStatusCode.UpgradeRequired, (await plain.GetAsync("ws?deviceId=h1&access_token=" + Gw.Token("h1"))).StatusCode);
    }

    [Fact]
    public async Task Refusals_are_logged_with_their_reason()
    {
        await StatusOfAsync("ws?deviceId=r1", Gw.Token("r2"));
        Assert.Contains(Gw.Logs.Lines, l => l.Contains("[1003]") && l.Contains("403") && l.Contains("token is for another device"));
    }

    [Fact]
    public async Task Tokens_never_reach_the_logs()
    {
        var queryToken = Gw.Token("leak1");
        var headerToken = Gw.Token("leak2");
        var badToken = Sign("leak3", "another-secret-that-is-long-enough-0123456789");
        using (var a = await Gw.ConnectAsync("leak0")) { }
        Assert.Equal(101, await StatusOfAsync("ws?deviceId=leak1&access_token=" + queryToken));
        Assert.Equal(101, await StatusOfAsync("ws?deviceId=leak2", headerToken));
        Assert.Equal(401, await StatusOfAsync("ws?deviceId=leak3&access_token=" + badToken));
        Assert.NotEmpty(Gw.Logs.Lines);
        foreach (var token in new[] { queryToken, headerToken, badToken })
        {
            var signature = token[(token.LastIndexOf('.') + 1)..];
            Assert.DoesNotContain(Gw.Logs.Lines, l => l.Contains(signature, StringComparison.Ordinal));
        }
        Assert.DoesNotContain(Gw.Logs.Lines, l => l.Contains("access_token=", StringComparison.Ordinal));
        Assert.DoesNotContain(Gw.Logs.Lines, l => l.Contains(TestGateway.ApiKey, StringComparison.Ordinal));
    }

    internal static string Sign(string sub, string secret, DateTimeOffset? exp = null, DateTimeOffset? nbf = null, string algorithm = SecurityAlgorithms.HmacSha256)
    {
        var claims = new Dictionary<string, object> { ["sub"] = sub };
        if (exp is { } e) claims["exp"] = e.ToUnixTimeSeconds();
        if (nbf is { } n) claims["nbf"] = n.ToUnixTimeSeconds();
        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(new SecurityTokenDescriptor
        {
            Claims = claims,
            SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(Encoding.UTF8.GetBytes(secret)), algorithm),
        });
    }

    private static string Unsigned(string sub)
    {
        static string B64(string s) => Base64UrlEncoder.Encode(s);
        return B64("{\"alg\":\"none\",\"typ\":\"JWT\"}") + "." + B64($"{{\"sub\":\"{sub}\"}}") + ".";
    }
}
