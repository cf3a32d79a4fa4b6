using System.Security.Cryptography;
using System.Text;

namespace DeviceGate.Auth;

/// <summary>
/// Guards every <c>/api</c> route: <c>Authorization: Bearer &lt;api key&gt;</c>, compared in constant time.
/// Not the authentication stack (there are no users, cookies or schemes to negotiate), and a middleware rather than
/// an endpoint filter (a filter makes every API call box its arguments into an invocation context).
/// </summary>
internal static class ApiKeyCheck
{
    /// <summary>Runs <paramref name="next"/> for a request with a valid API key, otherwise answers 401.</summary>
    public static Task InvokeAsync(HttpContext context, RequestDelegate next, ApiKeyVerifier verifier)
    {
        var key = BearerToken.From(context.Request);
        if (key is not null && verifier.IsValid(key)) return next(context);
        context.Response.Headers.WWWAuthenticate = "Bearer";
        return Results.Problem(
            statusCode: StatusCodes.Status401Unauthorized,
            title: "API key required",
            detail: "Send a valid API key as 'Authorization: Bearer <key>'.",
            type: "unauthorized").ExecuteAsync(context);
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
        // On the stack for any key of a sensible length; a longer one is hashed from the heap like before.
        var max = Encoding.UTF8.GetMaxByteCount(key.Length);
        Span<byte> utf8 = max <= 1024 ? stackalloc byte[max] : new byte[max];
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(utf8[..Encoding.UTF8.GetBytes(key, utf8)], hash);
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
