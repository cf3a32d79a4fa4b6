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

    public Outcome CheckRequest(DeviceUpgrade request)
    {
        var ids = request.Query("deviceId");
        string? id = ids.Count == 1 ? ids[0] : null;
        if (ids.Count > 1) return Refuse(400, "bad_id", "more than one deviceId");
        if (string.IsNullOrEmpty(id)) return Refuse(400, "bad_id", "missing deviceId");
        if (!DeviceId.IsValid(id)) return Refuse(400, "bad_id", "invalid deviceId: use 1-128 characters of [A-Za-z0-9._:-], starting with a letter or digit");
        if (id == DeviceId.Server) return Refuse(400, "bad_id", "the device id 'server' is reserved", id);

        var origin = CheckOrigin(request);
        if (origin is not null) return Refuse(403, "origin", origin, id);

        var token = request.Token();
        // A token wins; without one, a client certificate (on https, with a CA file configured) is the credential.
        var certificate = token is null && certificates.Enabled ? request.ClientCertificate : null;
        if (token is null && certificate is null && !options.Value.Auth.AllowAnonymousDevices) return Refuse(401, "token_missing", "missing token", id);
        if (UpgradeProblem(request) is { } problem) return problem with { DeviceId = id };
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
    /// <c>Connection: Upgrade</c>, not HTTP/1.1) gets 400 as RFC 6455 §4.2.1 asks, and an unknown version 426 naming
    /// version 13 (§4.4).
    /// </summary>
    public static Outcome? UpgradeProblem(DeviceUpgrade request)
    {
        if (request.IsWebSocketRequest) return null;
        if (!request.Header("Upgrade").Contains("websocket", StringComparison.OrdinalIgnoreCase))
        {
            return Refuse(426, "not_upgrade", "not a WebSocket upgrade request");
        }
        if (!request.IsGet || !request.Header("Connection").Contains("upgrade", StringComparison.OrdinalIgnoreCase))
        {
            return Refuse(400, "bad_upgrade", "a WebSocket upgrade is a GET with Connection: Upgrade");
        }
        if (!request.IsHttp11OrLater) return Refuse(400, "bad_upgrade", "a WebSocket upgrade needs HTTP/1.1");
        if (!IsValidKey(request.Header("Sec-WebSocket-Key"))) return Refuse(400, "bad_upgrade", "Sec-WebSocket-Key must be the base64 encoding of 16 bytes");
        if (request.Header("Sec-WebSocket-Version") != "13") return Refuse(426, "bad_upgrade", "unsupported Sec-WebSocket-Version (this server speaks 13)");
        return Refuse(400, "bad_upgrade", "not a WebSocket upgrade this server can accept");
    }

    internal static bool IsValidKey(string key)
    {
        Span<byte> bytes = stackalloc byte[18];
        return key.Length == 24 && Convert.TryFromBase64String(key, bytes, out var written) && written == 16;
    }

    /// <summary>
    /// Null when the origin is allowed, otherwise why not. Devices send no Origin and are always allowed. Same origin
    /// means the same scheme, host and port as this request (an https page is not the origin of an http listener).
    /// </summary>
    public string? CheckOrigin(DeviceUpgrade request)
    {
        var origin = request.Header("Origin");
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

    private static Outcome Refuse(int status, string code, string reason, string? id = null) => new(status, code, reason, id, null);
}
