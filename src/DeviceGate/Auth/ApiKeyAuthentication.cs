using System.Security.Cryptography;
using System.Text;
using Microsoft.Extensions.Options;

namespace DeviceGate.Auth;

/// <summary>
/// The API's callers: keys (hashed at start; a presented key is hashed and compared in constant time with every
/// known hash, so neither its length nor its content leaks through timing) and, when
/// <c>DeviceGate:Auth:Jwt:ApiAudience</c> is set, bearer JWTs of the device-token issuer with that audience.
/// Keys under <c>DeviceGate:Auth:ApiKeys</c> (and a generated one) have every scope.
/// </summary>
public sealed class ApiCallers
{
    public const string HashPrefix = "sha256:";

    private readonly (byte[] Hash, ApiCaller Caller)[] _keys;
    private readonly DeviceTokens _tokens;
    private readonly string? _apiAudience;

    internal ApiCallers(GatewaySecrets secrets, IOptions<GatewayOptions> options, DeviceTokens tokens)
    {
        var admin = new[] { new ScopeGrant(ApiScopes.Admin, null) };
        var keys = new List<(byte[], ApiCaller)>();
        for (var i = 0; i < secrets.ApiKeys.Count; i++)
        {
            var name = secrets.GeneratedApiKeyPath is null ? $"ApiKeys:{i}" : "generated";
            keys.Add((Hash(secrets.ApiKeys[i]), new ApiCaller(name, admin)));
        }
        foreach (var (name, key) in options.Value.Auth.Keys)
        {
            var hash = key.Key is { } plain ? Hash(plain) : Convert.FromHexString(key.Hash![HashPrefix.Length..]);
            var grants = key.Scopes.Select(s => ApiScopes.TryParse(s, out var g) ? g : throw new InvalidOperationException($"DeviceGate:Auth:Keys:{name}: unknown scope {s}")).ToArray();
            keys.Add((hash, new ApiCaller(name, grants)));
        }
        _keys = keys.ToArray();
        _tokens = tokens;
        _apiAudience = options.Value.Auth.Jwt.ApiAudience;
    }

    /// <summary><c>sha256:</c> + lowercase hex of SHA-256 over the key's UTF-8 bytes (what <c>Keys:&lt;name&gt;:Hash</c> holds).</summary>
    public static string HashText(string key) => HashPrefix + Convert.ToHexStringLower(Hash(key));

    private static byte[] Hash(string key) => SHA256.HashData(Encoding.UTF8.GetBytes(key));

    /// <summary>The caller a bearer credential names, or null.</summary>
    public async ValueTask<ApiCaller?> FindAsync(string credential)
    {
        if (FindKey(credential) is { } caller) return caller;
        if (_apiAudience is null || credential.Count(c => c == '.') != 2) return null;
        var result = await _tokens.ValidateIssuedAsync(credential, _apiAudience).ConfigureAwait(false);
        if (result is not { IsValid: true, SecurityToken: Microsoft.IdentityModel.JsonWebTokens.JsonWebToken jwt }) return null;
        var sub = jwt.TryGetPayloadValue<string>("sub", out var s) && !string.IsNullOrEmpty(s) ? s : "token";
        return new ApiCaller(sub, TokenScopes(jwt), isToken: true);
    }

    /// <summary>The space-separated <c>scope</c> claim, or the <c>scp</c> array (or string); unknown scopes are ignored.</summary>
    private static ScopeGrant[] TokenScopes(Microsoft.IdentityModel.JsonWebTokens.JsonWebToken jwt)
    {
        IEnumerable<string> texts = [];
        if (jwt.TryGetPayloadValue<string>("scope", out var scope) && scope is not null) texts = scope.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        else if (jwt.TryGetPayloadValue<string[]>("scp", out var many) && many is not null) texts = many;
        else if (jwt.TryGetPayloadValue<string>("scp", out var one) && one is not null) texts = one.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return texts.Select(t => ApiScopes.TryParse(t, out var g) ? g : (ScopeGrant?)null).OfType<ScopeGrant>().ToArray();
    }

    private ApiCaller? FindKey(string key)
    {
        // On the stack for any key of a sensible length; a longer one is hashed from the heap.
        var max = Encoding.UTF8.GetMaxByteCount(key.Length);
        Span<byte> utf8 = max <= 1024 ? stackalloc byte[max] : new byte[max];
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(utf8[..Encoding.UTF8.GetBytes(key, utf8)], hash);
        ApiCaller? found = null;
        foreach (var (h, caller) in _keys)
        {
            if (CryptographicOperations.FixedTimeEquals(h, hash)) found = caller;
        }
        return found;
    }
}

internal static class BearerToken
{
    /// <summary>The credential of an <c>Authorization: Bearer</c> header, or null.</summary>
    public static string? From(HttpRequest request) => From(request.Headers.Authorization.ToString());

    /// <summary>The credential of an <c>Authorization</c> header's value when it is <c>Bearer</c>, or null.</summary>
    public static string? From(string header)
    {
        const string prefix = "Bearer ";
        if (!header.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) return null;
        var value = header[prefix.Length..].Trim();
        return value.Length == 0 ? null : value;
    }
}
