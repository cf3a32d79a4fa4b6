using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace DeviceGate.Auth;

/// <summary>The <c>/api</c> scheme: <c>Authorization: Bearer &lt;api key&gt;</c>, compared in constant time.</summary>
internal sealed class ApiKeyAuthenticationHandler(
    IOptionsMonitor<AuthenticationSchemeOptions> options,
    ILoggerFactory logger,
    UrlEncoder encoder,
    ApiKeyVerifier verifier) : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    public const string SchemeName = "ApiKey";

    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var key = BearerToken.From(Request);
        if (key is null) return Task.FromResult(AuthenticateResult.NoResult());
        if (!verifier.IsValid(key)) return Task.FromResult(AuthenticateResult.Fail("invalid API key"));
        var identity = new ClaimsIdentity([new Claim(ClaimTypes.Name, "backend")], SchemeName);
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), SchemeName)));
    }

    protected override async Task HandleChallengeAsync(AuthenticationProperties properties)
    {
        Response.StatusCode = StatusCodes.Status401Unauthorized;
        Response.Headers.WWWAuthenticate = "Bearer";
        await Results.Problem(
            statusCode: StatusCodes.Status401Unauthorized,
            title: "API key required",
            detail: "Send a valid API key as 'Authorization: Bearer <key>'.",
            type: "https://devicegate.dev/problems/unauthorized").ExecuteAsync(Context);
    }
}

/// <summary>Checks API keys without leaking their length or content through timing.</summary>
public sealed class ApiKeyVerifier
{
    private readonly byte[][] _hashes;

    public ApiKeyVerifier(GatewaySecrets secrets) =>
        _hashes = secrets.ApiKeys.Select(k => SHA256.HashData(Encoding.UTF8.GetBytes(k))).ToArray();

    public bool IsValid(string key)
    {
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(key));
        var ok = false;
        foreach (var h in _hashes) ok |= CryptographicOperations.FixedTimeEquals(h, hash);
        return ok;
    }
}

internal static class BearerToken
{
    /// <summary>The credential of an <c>Authorization: Bearer</c> header, or null.</summary>
    public static string? From(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        const string prefix = "Bearer ";
        if (!header.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) return null;
        var value = header[prefix.Length..].Trim();
        return value.Length == 0 ? null : value;
    }
}
