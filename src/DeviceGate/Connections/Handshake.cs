using DeviceGate.Auth;
using Microsoft.Extensions.Options;

namespace DeviceGate.Connections;

/// <summary>
/// The checks a device upgrade must pass. <see cref="CheckRequest"/> holds those that cost nothing (id 400, upgrade
/// shape 426/400, origin 403, missing token 401): they run before admission, so a flood of them cannot use up the
/// connect rate. <see cref="CheckTokenAsync"/> then validates the token (401/403) once the request is admitted.
/// </summary>
internal sealed class Handshake(IOptions<GatewayOptions> options, DeviceTokens tokens, DeviceCertificates certificates, Storage.IDeviceDirectory directory)
{
    /// <summary>The verdict; <see cref="Code"/> is the stable reason used in metrics.</summary>
    public readonly record struct Outcome(int Status, string Code, string Reason, string? DeviceId, DeviceIdentity? Identity, string? Token = null,
        System.Security.Cryptography.X509Certificates.X509Certificate2? Certificate = null)
    {
        public bool Accepted => Status == 0;
    }

    public Outcome CheckRequest(HttpContext context)
    {
        var request = context.Request;
        var ids = request.Query["deviceId"];
        string? id = ids.Count == 1 ? ids[0] : null;
        if (ids.Count > 1) return Refuse(400, "bad_id", "more than one deviceId");
        if (string.IsNullOrEmpty(id)) return Refuse(400, "bad_id", "missing deviceId");
        if (!DeviceId.IsValid(id)) return Refuse(400, "bad_id", "invalid deviceId: use 1-128 characters of [A-Za-z0-9._:-], starting with a letter or digit");
        if (id == DeviceId.Server) return Refuse(400, "bad_id", "the device id 'server' is reserved", id);

        var origin = CheckOrigin(request);
        if (origin is not null) return Refuse(403, "origin", origin, id);

        var token = TokenOf(request);
        // A token wins; without one, a client certificate (on https, with a CA file configured) is the credential.
        var certificate = token is null && certificates.Enabled ? context.Connection.ClientCertificate : null;
        if (token is null && certificate is null && !options.Value.Auth.AllowAnonymousDevices) return Refuse(401, "token_missing", "missing token", id);
        if (UpgradeProblem(context) is { } problem) return problem with { DeviceId = id };
        return new Outcome(0, "ok", "ok", id, null, token, certificate);
    }

    /// <summary>Validates the token of a request that passed <see cref="CheckRequest"/>; asks the directory about revocation.</summary>
    public async Task<Outcome> CheckTokenAsync(string id, string? token, System.Security.Cryptography.X509Certificates.X509Certificate2? certificate = null)
    {
        if (token is null && certificate is null) return new Outcome(0, "anonymous", "anonymous", id, new DeviceIdentity(id, null, null, DevicePermissions.Unrestricted));
        var (result, identity) = token is not null ? await tokens.ValidateAsync(token, id).ConfigureAwait(false) : certificates.Validate(certificate!, id);
        if (result == TokenCheck.Valid && await directory.TokensNotBeforeAsync(id).ConfigureAwait(false) is { } notBefore
            && (identity!.IssuedAt is not { } iat || iat < notBefore))
        {
            // Revoked: issued before the revocation, or with no iat to prove otherwise.
            return Refuse(401, "token_revoked", "token was revoked", id);
        }
        return (result, token is null) switch
        {
            (TokenCheck.Valid, _) => new Outcome(0, "ok", "ok", id, identity),
            (TokenCheck.WrongDevice, false) => Refuse(403, "token_wrong_device", "token is for another device", id),
            (TokenCheck.WrongDevice, true) => Refuse(403, "certificate_wrong_device", "certificate is for another device", id),
            (_, false) => Refuse(401, "token_invalid", "invalid or expired token", id),
            _ => Refuse(401, "certificate_invalid", "untrusted, expired or revoked certificate", id),
        };
    }

    /// <summary>
    /// Null for a WebSocket upgrade the framework will accept. A request that is no upgrade at all gets 426; one that
    /// asks for <c>Upgrade: websocket</c> but is malformed (no or a bad <c>Sec-WebSocket-Key</c>, not a GET, no
    /// <c>Connection: Upgrade</c>) gets 400 as RFC 6455 §4.2.1 asks, and an unknown version 426 naming version 13 (§4.4).
    /// </summary>
    public static Outcome? UpgradeProblem(HttpContext context)
    {
        if (context.WebSockets.IsWebSocketRequest) return null;
        var headers = context.Request.Headers;
        if (!headers.Upgrade.ToString().Contains("websocket", StringComparison.OrdinalIgnoreCase))
        {
            return Refuse(426, "not_upgrade", "not a WebSocket upgrade request");
        }
        if (!HttpMethods.IsGet(context.Request.Method) || !headers.Connection.ToString().Contains("upgrade", StringComparison.OrdinalIgnoreCase))
        {
            return Refuse(400, "bad_upgrade", "a WebSocket upgrade is a GET with Connection: Upgrade");
        }
        if (!IsValidKey(headers.SecWebSocketKey.ToString())) return Refuse(400, "bad_upgrade", "Sec-WebSocket-Key must be the base64 encoding of 16 bytes");
        return Refuse(426, "bad_upgrade", "unsupported Sec-WebSocket-Version (this server speaks 13)");
    }

    /// <summary>Refusal headers RFC 6455 asks for: a 426 names the upgrade and the version this server speaks.</summary>
    public static void AddRefusalHeaders(HttpResponse response, int status)
    {
        if (status != 426) return;
        response.Headers.Upgrade = "websocket";
        response.Headers.SecWebSocketVersion = "13";
    }

    private static bool IsValidKey(string key)
    {
        Span<byte> bytes = stackalloc byte[18];
        return key.Length == 24 && Convert.TryFromBase64String(key, bytes, out var written) && written == 16;
    }

    /// <summary>
    /// Null when the origin is allowed, otherwise why not. Devices send no Origin and are always allowed. Same origin
    /// means the same scheme, host and port as this request (an https page is not the origin of an http listener).
    /// </summary>
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
            // The page was served from the scheme://host:port this request is addressed to.
            var scheme = request.IsHttps ? "https" : "http";
            var hostPort = request.Host.Port ?? (request.IsHttps ? 443 : 80);
            var requestHost = request.Host.Host.Trim('[', ']');
            if (string.Equals(uri.Scheme, scheme, StringComparison.OrdinalIgnoreCase)
                && string.Equals(uri.IdnHost.Trim('[', ']'), requestHost, StringComparison.OrdinalIgnoreCase) && uri.Port == hostPort) return null;
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
