using System.Security.Cryptography;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace DeviceGate.Tests.Infrastructure;

/// <summary>
/// An OpenID Connect issuer for tests, served over http on loopback by a real Kestrel: a discovery document and a
/// key set whose keys the test changes at will (RSA and EC keys generated here), a switch that makes it answer 503,
/// and a count of key-set requests.
/// </summary>
public sealed class TestIssuer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Lock _gate = new();
    private readonly List<SecurityKey> _published = [];
    private int _jwksRequests;
    private int _refused;

    private TestIssuer(WebApplication app) => _app = app;

    public Uri BaseUri { get; private set; } = null!;

    /// <summary>The issuer the discovery document names (the authority itself).</summary>
    public string Issuer => BaseUri.ToString().TrimEnd('/');

    public string JwksUrl => Issuer + "/jwks";

    /// <summary>While true every request is answered 503.</summary>
    public volatile bool Down;

    /// <summary>Key-set requests answered while up.</summary>
    public int JwksRequests => Volatile.Read(ref _jwksRequests);

    /// <summary>Requests of any kind answered 503 while <see cref="Down"/>.</summary>
    public int Refused => Volatile.Read(ref _refused);

    public static async Task<TestIssuer> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var issuer = new TestIssuer(app);
        app.Use(async (context, next) =>
        {
            if (issuer.Down)
            {
                context.Response.StatusCode = 503;
                Interlocked.Increment(ref issuer._refused);
                return;
            }
            await next(context);
        });
        app.MapGet("/.well-known/openid-configuration", () => Results.Json(new Dictionary<string, object>
        {
            ["issuer"] = issuer.Issuer,
            ["jwks_uri"] = issuer.JwksUrl,
            ["id_token_signing_alg_values_supported"] = new[] { "RS256", "PS256", "ES256" },
        }));
        app.MapGet("/jwks", () =>
        {
            Interlocked.Increment(ref issuer._jwksRequests);
            lock (issuer._gate)
            {
                var keys = issuer._published.Select(k => JsonWebKeyConverter.ConvertFromSecurityKey(k)).Select(Public).ToList();
                return Results.Json(new Dictionary<string, object> { ["keys"] = keys });
            }
        });
        await app.StartAsync();
        issuer.BaseUri = new Uri(app.Urls.First());
        return issuer;
    }

    /// <summary>A key's public half as a JWK (what a real issuer publishes).</summary>
    private static Dictionary<string, object> Public(JsonWebKey k)
    {
        var jwk = new Dictionary<string, object> { ["kty"] = k.Kty, ["kid"] = k.Kid, ["use"] = "sig" };
        if (k.Kty == "RSA")
        {
            jwk["n"] = k.N;
            jwk["e"] = k.E;
        }
        else
        {
            jwk["crv"] = k.Crv;
            jwk["x"] = k.X;
            jwk["y"] = k.Y;
        }
        return jwk;
    }

    public static RsaSecurityKey NewRsaKey(string kid) => new(RSA.Create(2048)) { KeyId = kid };

    public static ECDsaSecurityKey NewEcKey(string kid) => new(ECDsa.Create(ECCurve.NamedCurves.nistP256)) { KeyId = kid };

    public void Publish(SecurityKey key)
    {
        lock (_gate) _published.Add(key);
    }

    public void Withdraw(SecurityKey key)
    {
        lock (_gate) _published.Remove(key);
    }

    /// <summary>A token signed with <paramref name="key"/>; <paramref name="claims"/> default to this issuer and a 1 h expiry.</summary>
    public string Sign(SecurityKey key, string algorithm, IDictionary<string, object> claims, bool withIssuer = true)
    {
        var all = new Dictionary<string, object>(claims);
        if (withIssuer && !all.ContainsKey("iss")) all["iss"] = Issuer;
        if (!all.ContainsKey("exp")) all["exp"] = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds();
        if (!all.ContainsKey("iat")) all["iat"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(new SecurityTokenDescriptor
        {
            Claims = all,
            SigningCredentials = new SigningCredentials(key, algorithm),
        });
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
