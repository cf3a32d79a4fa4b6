using System.Security.Claims;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace DeviceGate.Auth;

/// <summary>What a valid device token says; <see cref="Permissions"/> come from its groups/send claims.</summary>
public sealed record DeviceIdentity(string DeviceId, DateTimeOffset? ExpiresAt, JsonWebToken? Token, DevicePermissions Permissions)
{
    /// <summary>For a device certificate: its notBefore, which revocation compares like a token's iat.</summary>
    public DateTimeOffset? CertificateIssuedAt { get; init; }

    /// <summary>The token's <c>iat</c> (a NumericDate: whole or fractional seconds), or a certificate's notBefore.</summary>
    public DateTimeOffset? IssuedAt
    {
        get
        {
            if (Token is null) return CertificateIssuedAt;
            // Read from the payload itself: the JWT library truncates iat to whole seconds, and ours carry milliseconds
            // (a NumericDate may be fractional) so that a token minted right after a revocation is newer than it.
            using var payload = System.Text.Json.JsonDocument.Parse(Base64UrlEncoder.DecodeBytes(Token.EncodedPayload));
            return payload.RootElement.TryGetProperty(JwtRegisteredClaimNames.Iat, out var iat)
                   && iat.ValueKind == System.Text.Json.JsonValueKind.Number && iat.TryGetDouble(out var s) && double.IsFinite(s)
                ? DateTimeOffset.FromUnixTimeMilliseconds((long)Math.Floor(s * 1000))
                : null;
        }
    }
}

public enum TokenCheck { Valid, Invalid, WrongDevice }

/// <summary>
/// Mints HS256 device tokens (JWT, <c>sub</c> = device id) and validates device tokens of every kind: HS256 with the
/// token secret (or a previous one, during a rotation), and RS256/PS256/ES256 from an outside issuer
/// (<see cref="IssuerKeys"/>, device id in <c>DeviceGate:Auth:Jwt:DeviceIdClaim</c>). The header's <c>alg</c> picks the
/// key family before anything is verified, so an asymmetric token is never checked against the HMAC secret, nor an
/// HS256 token against a public key; <c>none</c> and unlisted algorithms are refused.
/// </summary>
public sealed class DeviceTokens
{
    private readonly JsonWebTokenHandler _handler = new() { SetDefaultTimesOnTokenCreation = false, MapInboundClaims = false };
    private readonly SymmetricSecurityKey _key;
    private readonly TokenValidationParameters _symmetric;
    private readonly IssuerKeys? _issuer;
    private readonly JwtOptions _jwt;
    private readonly TimeProvider _time;

    /// <summary>For minting only (the CLI): no outside issuer.</summary>
    public DeviceTokens(GatewaySecrets secrets, TimeProvider time) : this(secrets, null, new JwtOptions(), time)
    {
    }

    internal DeviceTokens(GatewaySecrets secrets, IssuerKeys? issuer, JwtOptions jwt, TimeProvider time)
    {
        _time = time;
        _issuer = issuer is { Enabled: true } ? issuer : null;
        _jwt = jwt;
        _key = new SymmetricSecurityKey(secrets.TokenSecret);
        _symmetric = Parameters([_key, .. secrets.PreviousTokenSecrets.Select(s => new SymmetricSecurityKey(s))], [SecurityAlgorithms.HmacSha256]);
    }

    private TokenValidationParameters Parameters(IEnumerable<SecurityKey> keys, IEnumerable<string> algorithms, string? issuer = null, string? audience = null) => new()
    {
        IssuerSigningKeys = keys,
        ValidAlgorithms = algorithms,
        RequireSignedTokens = true,
        ValidateIssuerSigningKey = true,
        ValidateIssuer = issuer is not null,
        ValidIssuer = issuer,
        ValidateAudience = audience is not null,
        ValidAudience = audience,
        ValidateLifetime = true,
        RequireExpirationTime = false,
        ClockSkew = Defaults.TokenClockSkew,
        // The JWT library reads the clock itself; route it through our TimeProvider so tests can move time.
        LifetimeValidator = ValidateLifetime,
    };

    public string Mint(string deviceId, TimeSpan? ttl, IReadOnlyDictionary<string, object>? extraClaims = null)
    {
        var now = _time.GetUtcNow();
        var claims = new Dictionary<string, object>(extraClaims ?? new Dictionary<string, object>())
        {
            [JwtRegisteredClaimNames.Sub] = deviceId,
            // Milliseconds (a NumericDate may be fractional): a token minted just after a revocation is newer than it.
            [JwtRegisteredClaimNames.Iat] = now.ToUnixTimeMilliseconds() / 1000.0,
        };
        if (ttl is { } t) claims[JwtRegisteredClaimNames.Exp] = now.Add(t).ToUnixTimeSeconds();
        return _handler.CreateToken(new SecurityTokenDescriptor
        {
            Claims = claims,
            SigningCredentials = new SigningCredentials(_key, SecurityAlgorithms.HmacSha256),
        });
    }

    public async Task<(TokenCheck Result, DeviceIdentity? Identity)> ValidateAsync(string token, string deviceId)
    {
        try
        {
            if (Read(token) is not { } jwt) return (TokenCheck.Invalid, null);
            if (jwt.Alg == SecurityAlgorithms.HmacSha256)
            {
                var result = await _handler.ValidateTokenAsync(jwt, _symmetric).ConfigureAwait(false);
                return Identify(result, deviceId, JwtRegisteredClaimNames.Sub, DevicePermissions.GroupsClaim, DevicePermissions.SendClaim);
            }
            if (_issuer is null || !_jwt.AcceptedAlgorithms.Contains(jwt.Alg, StringComparer.Ordinal)) return (TokenCheck.Invalid, null);
            var validated = await ValidateIssuedAsync(jwt, _jwt.Audience).ConfigureAwait(false);
            return validated is null ? (TokenCheck.Invalid, null) : Identify(validated, deviceId, _jwt.DeviceIdClaim, _jwt.GroupsClaim, _jwt.SendClaim);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.Text.Json.JsonException or FormatException or OverflowException
                                      or SecurityTokenException)
        {
            // Whatever a token's bytes hold (a claim that does not decode, a number out of range), it is refused, never thrown.
            return (TokenCheck.Invalid, null);
        }
    }

    /// <summary>
    /// Validates a token of the outside issuer against its current keys (and, when it names a key they lack, once more
    /// after asking for the key set again); null when there are no keys yet.
    /// </summary>
    internal Task<TokenValidationResult?> ValidateIssuedAsync(string token, string? audience) =>
        Read(token) is { } jwt ? ValidateIssuedAsync(jwt, audience) : Task.FromResult<TokenValidationResult?>(null);

    /// <summary>
    /// Decodes a token once, to be validated as read (the string overloads of the handler would decode it a second
    /// time); null when it is over the size limit those overloads apply, or does not decode.
    /// </summary>
    private JsonWebToken? Read(string token)
    {
        if (token.Length > _handler.MaximumTokenSizeInBytes) return null;
        try
        {
            return _handler.ReadJsonWebToken(token);
        }
        catch (Exception e) when (e is ArgumentException or SecurityTokenException or System.Text.Json.JsonException or FormatException)
        {
            return null;
        }
    }

    private async Task<TokenValidationResult?> ValidateIssuedAsync(JsonWebToken token, string? audience)
    {
        if (_issuer is null || await _issuer.CurrentAsync().ConfigureAwait(false) is not { } keys) return null;
        var result = await _handler.ValidateTokenAsync(token, Parameters(keys.Keys, _jwt.AcceptedAlgorithms, keys.Issuer, audience)).ConfigureAwait(false);
        if (result.IsValid || result.Exception is not SecurityTokenSignatureKeyNotFoundException) return result;
        // A key the set does not have: perhaps the issuer rotated. At most one fetch per 30 s, however many tokens ask.
        if (await _issuer.RefreshForUnknownKeyAsync().ConfigureAwait(false) is not { } fresh || ReferenceEquals(fresh, keys)) return result;
        return await _handler.ValidateTokenAsync(token, Parameters(fresh.Keys, _jwt.AcceptedAlgorithms, fresh.Issuer, audience)).ConfigureAwait(false);
    }

    private static (TokenCheck, DeviceIdentity?) Identify(TokenValidationResult result, string deviceId, string idClaim, string groupsClaim, string sendClaim)
    {
        if (!result.IsValid || result.SecurityToken is not JsonWebToken jwt) return (TokenCheck.Invalid, null);
        if (!jwt.TryGetPayloadValue<string>(idClaim, out var id) || id is null) return (TokenCheck.Invalid, null);
        if (!string.Equals(id, deviceId, StringComparison.Ordinal)) return (TokenCheck.WrongDevice, null);
        DateTimeOffset? exp = jwt.TryGetPayloadValue<long>(JwtRegisteredClaimNames.Exp, out var e) ? DateTimeOffset.FromUnixTimeSeconds(e) : null;
        return (TokenCheck.Valid, new DeviceIdentity(deviceId, exp, jwt, DevicePermissions.From(jwt, groupsClaim, sendClaim)));
    }

    private bool ValidateLifetime(DateTime? notBefore, DateTime? expires, SecurityToken token, TokenValidationParameters p)
    {
        var now = _time.GetUtcNow().UtcDateTime;
        if (notBefore is { } nbf && nbf > now + p.ClockSkew) return false;
        if (expires is { } exp && exp < now - p.ClockSkew) return false;
        return true;
    }
}
