using DeviceGate.Auth;
using DeviceGate.Hosting;
using Microsoft.Extensions.Options;

namespace DeviceGate.Connections;

/// <summary>The checks a device upgrade must pass, in order: id (400), origin (403), token (401/403).</summary>
internal sealed class Handshake(IOptions<GatewayOptions> options, DeviceTokens tokens, Storage.DeviceDirectory directory)
{
    /// <summary>The verdict; <see cref="Code"/> is the stable reason used in metrics.</summary>
    public readonly record struct Outcome(int Status, string Code, string Reason, string? DeviceId, DeviceIdentity? Identity)
    {
        public bool Accepted => Status == 0;
    }

    public async Task<Outcome> CheckDeviceAsync(HttpRequest request)
    {
        var ids = request.Query["deviceId"];
        string? id = ids.Count == 1 ? ids[0] : null;
        if (ids.Count > 1) return Refuse(400, "bad_id", "more than one deviceId");
        if (string.IsNullOrEmpty(id)) return Refuse(400, "bad_id", "missing deviceId");
        if (!DeviceId.IsValid(id)) return Refuse(400, "bad_id", "invalid deviceId: use 1-128 characters of [A-Za-z0-9._:-], starting with a letter or digit");
        if (id == DeviceId.Server) return Refuse(400, "bad_id", "the device id 'server' is reserved", id);

        var origin = CheckOrigin(request);
        if (origin is not null) return Refuse(403, "origin", origin, id);

        if (options.Value.Auth.AllowAnonymousDevices && TokenOf(request) is null)
        {
            return new Outcome(0, "anonymous", "anonymous", id, new DeviceIdentity(id, null, null));
        }
        var token = TokenOf(request);
        if (token is null) return Refuse(401, "token_missing", "missing token", id);
        var (result, identity) = await tokens.ValidateAsync(token, id).ConfigureAwait(false);
        if (result == TokenCheck.Valid && await directory.TokensNotBeforeAsync(id).ConfigureAwait(false) is { } notBefore
            && (identity!.IssuedAt is not { } iat || iat < notBefore))
        {
            // Revoked: issued before the revocation, or with no iat to prove otherwise.
            return Refuse(401, "token_revoked", "token was revoked", id);
        }
        return result switch
        {
            TokenCheck.Valid => new Outcome(0, "ok", "ok", id, identity),
            TokenCheck.WrongDevice => Refuse(403, "token_wrong_device", "token is for another device", id),
            _ => Refuse(401, "token_invalid", "invalid or expired token", id),
        };
    }

    /// <summary>Null when the origin is allowed, otherwise why not. Devices send no Origin and are always allowed.</summary>
    public string? CheckOrigin(HttpRequest request)
    {
        var origin = request.Headers.Origin.ToString();
        if (string.IsNullOrEmpty(origin)) return null;
        var allowed = options.Value.WebSockets.AllowedOrigins;
        if (allowed.Contains("*")) return null;
        var normalized = origin.TrimEnd('/');
        foreach (var entry in allowed)
        {
            if (string.Equals(entry.TrimEnd('/'), normalized, StringComparison.OrdinalIgnoreCase)) return null;
        }
        if (Uri.TryCreate(origin, UriKind.Absolute, out var uri) && request.Host.HasValue)
        {
            // Same origin: the page was served from the host:port this request is addressed to.
            var hostPort = request.Host.Port ?? uri.Port;
            var requestHost = request.Host.Host.Trim('[', ']');
            if (string.Equals(uri.IdnHost.Trim('[', ']'), requestHost, StringComparison.OrdinalIgnoreCase) && uri.Port == hostPort) return null;
        }
        return "origin not allowed";
    }

    /// <summary>The header token wins over the <c>access_token</c> query parameter (which browsers need).</summary>
    private static string? TokenOf(HttpRequest request)
    {
        var header = BearerToken.From(request);
        if (header is not null) return header;
        var query = request.Query["access_token"];
        return query.Count == 1 && !string.IsNullOrEmpty(query[0]) ? query[0] : null;
    }

    private static Outcome Refuse(int status, string code, string reason, string? id = null) => new(status, code, reason, id, null);
}
