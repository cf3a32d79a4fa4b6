using System.Security.Claims;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace DeviceGate.Auth;

/// <summary>What a valid device token says.</summary>
public sealed record DeviceIdentity(string DeviceId, DateTimeOffset? ExpiresAt, JsonWebToken? Token)
{
    /// <summary>The token's <c>iat</c>, when it has one (a NumericDate: whole or fractional seconds).</summary>
    public DateTimeOffset? IssuedAt
    {
        get
        {
            if (Token is null) return null;
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

/// <summary>Mints and validates HS256 device tokens (JWT, <c>sub</c> = device id).</summary>
public sealed class DeviceTokens
{
    private readonly JsonWebTokenHandler _handler = new() { SetDefaultTimesOnTokenCreation = false };
    private readonly SymmetricSecurityKey _key;
    private readonly TokenValidationParameters _validation;
    private readonly TimeProvider _time;

    public DeviceTokens(GatewaySecrets secrets, TimeProvider time)
    {
        _time = time;
        _key = new SymmetricSecurityKey(secrets.TokenSecret);
        _validation = new TokenValidationParameters
        {
            IssuerSigningKey = _key,
            ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
            RequireSignedTokens = true,
            ValidateIssuerSigningKey = true,
            ValidateIssuer = false,
            ValidateAudience = false,
            ValidateLifetime = true,
            RequireExpirationTime = false,
            ClockSkew = Defaults.TokenClockSkew,
            // The JWT library reads the clock itself; route it through our TimeProvider so tests can move time.
            LifetimeValidator = ValidateLifetime,
        };
    }

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
        TokenValidationResult result;
        try
        {
            result = await _handler.ValidateTokenAsync(token, _validation).ConfigureAwait(false);
            if (!result.IsValid || result.SecurityToken is not JsonWebToken jwt) return (TokenCheck.Invalid, null);
            if (!string.Equals(jwt.Subject, deviceId, StringComparison.Ordinal)) return (TokenCheck.WrongDevice, null);
            DateTimeOffset? exp = jwt.TryGetPayloadValue<long>(JwtRegisteredClaimNames.Exp, out var e) ? DateTimeOffset.FromUnixTimeSeconds(e) : null;
            return (TokenCheck.Valid, new DeviceIdentity(deviceId, exp, jwt));
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.Text.Json.JsonException or FormatException or OverflowException)
        {
            // Whatever a token's bytes hold (a claim that does not decode, a number out of range), it is refused, never thrown.
            return (TokenCheck.Invalid, null);
        }
    }

    private bool ValidateLifetime(DateTime? notBefore, DateTime? expires, SecurityToken token, TokenValidationParameters p)
    {
        var now = _time.GetUtcNow().UtcDateTime;
        if (notBefore is { } nbf && nbf > now + p.ClockSkew) return false;
        if (expires is { } exp && exp < now - p.ClockSkew) return false;
        return true;
    }
}
