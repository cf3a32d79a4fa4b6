using System.Net.WebSockets;
using System.Text;
using DeviceGate.Tests.Infrastructure;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace DeviceGate.Tests.Functional;

/// <summary>
/// Device tokens from an outside issuer (issue 16): a real OpenID Connect discovery document and key set served on
/// loopback by <see cref="TestIssuer"/>, RS256/PS256/ES256 tokens, issuer and audience rules, key rotation, the
/// issuer going down, and HS256 beside it with a previous secret during a rotation.
/// </summary>
public sealed class OutsideIssuerTests : IAsyncLifetime
{
    private TestIssuer _issuer = null!;
    private readonly RsaSecurityKey _rsa = TestIssuer.NewRsaKey("rsa-1");
    private readonly ECDsaSecurityKey _ec = TestIssuer.NewEcKey("ec-1");

    public async Task InitializeAsync()
    {
        _issuer = await TestIssuer.StartAsync();
        _issuer.Publish(_rsa);
        _issuer.Publish(_ec);
    }

    public async Task DisposeAsync() => await _issuer.DisposeAsync();

    private Dictionary<string, string> Settings(bool authority = true, string? audience = "devices", string refresh = "01:00:00", params (string, string)[] extra)
    {
        var s = new Dictionary<string, string>
        {
            [authority ? "DeviceGate:Auth:Jwt:Authority" : "DeviceGate:Auth:Jwt:JwksUrl"] = authority ? _issuer.Issuer : _issuer.JwksUrl,
            ["DeviceGate:Auth:Jwt:RequireHttps"] = "false",
            ["DeviceGate:Auth:Jwt:RefreshInterval"] = refresh,
        };
        if (audience is not null) s["DeviceGate:Auth:Jwt:Audience"] = audience;
        foreach (var (k, v) in extra) s[k] = v;
        return s;
    }

    private static async Task<(int Status, ClientWebSocket Socket)> ConnectAsync(TestGateway gw, string device, string token)
    {
        var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        socket.Options.SetRequestHeader("Authorization", "Bearer " + token);
        try
        {
            await socket.ConnectAsync(gw.WsUri($"ws?deviceId={device}"), new CancellationTokenSource(Timeouts.Default).Token);
        }
        catch (WebSocketException)
        {
        }
        return ((int)socket.HttpStatusCode, socket);
    }

    private static async Task<int> StatusAsync(TestGateway gw, string device, string token)
    {
        var (status, socket) = await ConnectAsync(gw, device, token);
        socket.Dispose();
        return status;
    }

    /// <summary>The gateway fetched the key set at start (or the test would race the first fetch).</summary>
    private static Task KeysLoadedAsync(TestGateway gw) =>
        ApiExtensions.EventuallyAsync(() => Task.FromResult(gw.Logs.Lines.Any(l => l.Contains("[1500]", StringComparison.Ordinal))), "the key set was fetched");

    private string Token(SecurityKey key, string alg, string sub, string? aud = "devices", IDictionary<string, object>? more = null)
    {
        var claims = new Dictionary<string, object>(more ?? new Dictionary<string, object>()) { ["sub"] = sub };
        if (aud is not null) claims["aud"] = aud;
        return _issuer.Sign(key, alg, claims);
    }

    [Theory]
    [InlineData("RS256")]
    [InlineData("PS256")]
    [InlineData("ES256")]
    public async Task Rs256_ps256_and_es256_tokens_of_the_issuer_are_accepted(string alg)
    {
        await using var gw = await TestGateway.StartAsync(Settings());
        await KeysLoadedAsync(gw);
        var key = alg == "ES256" ? (SecurityKey)_ec : _rsa;
        var (status, socket) = await ConnectAsync(gw, "idp-dev", Token(key, alg, "idp-dev"));
        using (socket)
        {
            Assert.Equal(101, status);
            using var sent = await gw.Api.PostTextAsync("api/devices/idp-dev/messages", "hello");
            Assert.Equal("hello", await socket.ReceiveTextAsync());
        }
        // Another device's token is still a 403, and an HS256 token keeps working beside the issuer's.
        Assert.Equal(403, await StatusAsync(gw, "someone-else", Token(key, alg, "idp-dev")));
        Assert.Equal(101, await StatusAsync(gw, "hs-dev", gw.Token("hs-dev")));
        // Revocation by iat holds for the issuer's tokens too (theirs carry whole seconds: issued before the call).
        var before = Token(key, alg, "idp-dev", more: new Dictionary<string, object> { ["iat"] = DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeSeconds() });
        using (var revoke = await gw.Api.PostAsync("api/devices/idp-dev/revoke-tokens", null)) Assert.Equal(System.Net.HttpStatusCode.NoContent, revoke.StatusCode);
        Assert.Equal(401, await StatusAsync(gw, "idp-dev", before));
    }

    [Fact]
    public async Task Wrong_issuer_audience_expiry_algorithm_or_key_is_refused()
    {
        await using var gw = await TestGateway.StartAsync(Settings());
        await KeysLoadedAsync(gw);
        Assert.Equal(401, await StatusAsync(gw, "d1", _issuer.Sign(_rsa, "RS256", new Dictionary<string, object> { ["sub"] = "d1", ["aud"] = "devices", ["iss"] = "https://evil.example" })));
        Assert.Equal(401, await StatusAsync(gw, "d1", Token(_rsa, "RS256", "d1", aud: "someone-else")));
        Assert.Equal(401, await StatusAsync(gw, "d1", Token(_rsa, "RS256", "d1", aud: null)));
        Assert.Equal(401, await StatusAsync(gw, "d1", Token(_rsa, "RS256", "d1", more: new Dictionary<string, object>
        {
            ["exp"] = DateTimeOffset.UtcNow.AddMinutes(-5).ToUnixTimeSeconds(),
        })));
        // A key the issuer never published (the kid is unknown even after a fetch).
        Assert.Equal(401, await StatusAsync(gw, "d1", Token(TestIssuer.NewRsaKey("stranger"), "RS256", "d1")));
        // The algorithm swap: an "RS256" token whose signature is an HMAC with the token secret.
        var secretKey = new SymmetricSecurityKey(Encoding.UTF8.GetBytes(TestGateway.Secret)) { KeyId = "rsa-1" };
        var hmac = new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Claims = new Dictionary<string, object> { ["sub"] = "d1", ["aud"] = "devices", ["iss"] = _issuer.Issuer },
            SigningCredentials = new SigningCredentials(secretKey, SecurityAlgorithms.HmacSha256),
        });
        var parts = hmac.Split('.');
        var swapped = Base64UrlEncoder.Encode("""{"alg":"RS256","kid":"rsa-1","typ":"JWT"}""") + "." + parts[1] + "." + parts[2];
        Assert.Equal(401, await StatusAsync(gw, "d1", swapped));
        // alg none, and an algorithm left off the list.
        var none = Base64UrlEncoder.Encode("""{"alg":"none","typ":"JWT"}""") + "." + parts[1] + ".";
        Assert.Equal(401, await StatusAsync(gw, "d1", none));
        Assert.Equal(401, await StatusAsync(gw, "d1", Token(_rsa, "RS384", "d1")));
    }

    [Fact]
    public async Task The_device_id_and_permission_claims_can_be_named_and_algorithms_narrowed()
    {
        await using var gw = await TestGateway.StartAsync(Settings(authority: false, audience: null, extra:
        [
            ("DeviceGate:Auth:Jwt:DeviceIdClaim", "device_id"),
            ("DeviceGate:Auth:Jwt:GroupsClaim", "dg_groups"),
            ("DeviceGate:Auth:Jwt:Algorithms:0", "ES256"),
        ]));
        await KeysLoadedAsync(gw);
        var token = _issuer.Sign(_ec, "ES256", new Dictionary<string, object> { ["sub"] = "user-7", ["device_id"] = "claim-dev", ["dg_groups"] = new[] { "lab" } });
        Assert.Equal(403, await StatusAsync(gw, "user-7", token));
        using var socket = new ClientWebSocket();
        socket.Options.AddSubProtocol(Envelopes.Subprotocol);
        socket.Options.SetRequestHeader("Authorization", "Bearer " + token);
        await socket.ConnectAsync(gw.WsUri("ws?deviceId=claim-dev"), new CancellationTokenSource(Timeouts.Default).Token);
        // The renamed groups claim restricts like "groups" does.
        await socket.SendJsonAsync(new { type = "join", group = "kitchen", @ref = "r1" });
        var refused = await socket.ReceiveJsonAsync();
        Assert.Equal(("error", "forbidden"), (refused.Str("type"), refused.Str("code")));
        // RS256 is off the narrowed list.
        Assert.Equal(401, await StatusAsync(gw, "claim-dev", _issuer.Sign(_rsa, "RS256", new Dictionary<string, object> { ["device_id"] = "claim-dev" })));
    }

    [Fact]
    public async Task A_rotated_key_works_at_once_and_a_flood_of_unknown_kids_asks_the_issuer_at_most_once()
    {
        await using var gw = await TestGateway.StartAsync(Settings());
        await KeysLoadedAsync(gw);
        var fetches = _issuer.JwksRequests;
        var rotated = TestIssuer.NewRsaKey("rsa-2");
        _issuer.Publish(rotated);
        Assert.Equal(101, await StatusAsync(gw, "rot-dev", Token(rotated, "RS256", "rot-dev")));
        Assert.Equal(fetches + 1, _issuer.JwksRequests);
        // Bogus kids within the next 30 s: refused without another fetch.
        var bogus = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => StatusAsync(gw, "rot-dev", Token(TestIssuer.NewRsaKey($"bogus-{i}"), "RS256", "rot-dev")))); 
        Assert.All(bogus, s => Assert.Equal(401, s));
        Assert.Equal(fetches + 1, _issuer.JwksRequests);
    }

    [Fact]
    public async Task A_withdrawn_key_is_refused_after_the_next_refresh_and_an_unreachable_issuer_keeps_the_last_keys()
    {
        await using var gw = await TestGateway.StartAsync(Settings(refresh: "00:00:01"));
        await KeysLoadedAsync(gw);
        var ec = Token(_ec, "ES256", "keep-dev");
        var rsa = Token(_rsa, "RS256", "keep-dev");
        _issuer.Withdraw(_rsa);
        await ApiExtensions.EventuallyAsync(async () => await StatusAsync(gw, "keep-dev", rsa) == 401, "the withdrawn key refused after a refresh");

        _issuer.Down = true;
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(_issuer.Refused >= 2), "refreshes tried while the issuer is down");
        Assert.Equal(101, await StatusAsync(gw, "keep-dev", ec));
        Assert.Contains(gw.Logs.Lines, l => l.Contains("[1501]", StringComparison.Ordinal) && l.Contains("stay in force", StringComparison.Ordinal));
        // Once a minute at most.
        Assert.Single(gw.Logs.Lines, l => l.Contains("[1501]", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Before_the_first_fetch_succeeds_issuer_tokens_are_refused_hs256_works_and_the_node_is_ready()
    {
        _issuer.Down = true;
        await using var gw = await TestGateway.StartAsync(Settings());
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(gw.Logs.Lines.Any(l => l.Contains("[1501]", StringComparison.Ordinal))), "a fetch was tried");
        Assert.Equal(401, await StatusAsync(gw, "early", Token(_rsa, "RS256", "early")));
        Assert.Equal(101, await StatusAsync(gw, "early", gw.Token("early")));
        using var ready = await gw.Api.GetAsync("readyz");
        Assert.Equal(System.Net.HttpStatusCode.OK, ready.StatusCode);
        Assert.Contains(gw.Logs.Lines, l => l.Contains("[1501]", StringComparison.Ordinal) && l.Contains("refused until a fetch succeeds", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Backends_call_the_api_with_issuer_tokens_whose_scopes_come_from_scope_or_scp()
    {
        await using var gw = await TestGateway.StartAsync(Settings(extra: [("DeviceGate:Auth:Jwt:ApiAudience", "gateway-api")]));
        await KeysLoadedAsync(gw);
        HttpClient With(string token)
        {
            var http = ApiExtensions.Client(gw.BaseUri, token);
            return http;
        }
        var billing = _issuer.Sign(_rsa, "RS256", new Dictionary<string, object> { ["sub"] = "billing-svc", ["aud"] = "gateway-api", ["scope"] = "devices:read messages:send:kiosk-* bogus:scope" });
        using (var http = With(billing))
        {
            var me = await http.GetJsonAsync("api/whoami");
            Assert.Equal("billing-svc", me.Str("name"));
            Assert.Equal(["devices:read", "messages:send:kiosk-*"], me.GetProperty("scopes").EnumerateArray().Select(x => x.GetString()!).ToArray());
            Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync("api/devices")).StatusCode);
            using var state = await http.GetAsync("api/devices/kiosk-1/state");
            Assert.Equal(System.Net.HttpStatusCode.Forbidden, state.StatusCode);
            Assert.Equal("state:read", (await state.JsonAsync()).Str("scope"));
            using var sent = await http.PostAsync("api/devices/kiosk-1/messages?ttl=60", new StringContent("hi"));
            Assert.Equal(System.Net.HttpStatusCode.Accepted, sent.StatusCode);
        }
        var scp = _issuer.Sign(_ec, "ES256", new Dictionary<string, object> { ["sub"] = "ops", ["aud"] = "gateway-api", ["scp"] = new[] { "state:read" } });
        using (var http = With(scp)) Assert.Equal(System.Net.HttpStatusCode.OK, (await http.GetAsync("api/devices/kiosk-1/state")).StatusCode);
        // A device token (another audience, or HS256) is no API credential.
        using (var http = With(Token(_rsa, "RS256", "kiosk-1"))) Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await http.GetAsync("api/whoami")).StatusCode);
        using (var http = With(gw.Token("kiosk-1"))) Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await http.GetAsync("api/whoami")).StatusCode);
        Assert.Contains(gw.Logs.Lines, l => l.Contains("[1600]", StringComparison.Ordinal) && l.Contains("billing-svc POST", StringComparison.Ordinal));
        Assert.DoesNotContain(gw.Logs.Lines, l => l.Contains(billing, StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_previous_token_secret_still_validates_and_new_tokens_are_signed_with_the_current_one()
    {
        const string old = "the-previous-secret-of-this-gateway-0123456789";
        await using var before = await TestGateway.StartAsync(new Dictionary<string, string> { ["DeviceGate:Auth:TokenSecret"] = old });
        var oldToken = before.Token("rotating");
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string> { ["DeviceGate:Auth:PreviousTokenSecrets:0"] = old });
        Assert.Equal(101, await StatusAsync(gw, "rotating", oldToken));
        Assert.Equal(101, await StatusAsync(gw, "rotating", gw.Token("rotating")));
        await using var after = await TestGateway.StartAsync();
        Assert.Equal(401, await StatusAsync(after, "rotating", oldToken));
        Assert.Equal(101, await StatusAsync(after, "rotating", gw.Token("rotating")));
    }
}
