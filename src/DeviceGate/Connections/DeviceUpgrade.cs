using System.Net;
using System.Net.WebSockets;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Primitives;

namespace DeviceGate.Connections;

/// <summary>
/// One WebSocket upgrade request of a device (or an echo client), whichever way it arrived: through ASP.NET Core's
/// HTTP pipeline (<see cref="HttpUpgrade"/>) or answered at the connection level, before the HTTP layer
/// (<see cref="ConnectionUpgrade"/>). The handshake's checks and the endpoints see only this, so both paths refuse,
/// accept and run a device the same way. Header values are "" when absent; a repeated header is joined with ",".
/// </summary>
internal abstract class DeviceUpgrade
{
    /// <summary>How the upgrade arrived, as <c>devicegate_upgrades_total{path}</c> counts it: <c>connection</c> or <c>http</c>.</summary>
    public abstract string Via { get; }

    public abstract StringValues Query(string name);

    /// <summary>A request header by its name (any case), "" when absent.</summary>
    public abstract string Header(string name);

    public abstract bool IsGet { get; }

    /// <summary>HTTP/1.1 (an upgrade needs it) or an HTTP/2 extended CONNECT that the framework accepts.</summary>
    public abstract bool IsHttp11OrLater { get; }

    /// <summary>Whether the request came over TLS (or, from a known proxy, says so with X-Forwarded-Proto).</summary>
    public abstract bool IsHttps { get; }

    public abstract HostString Host { get; }

    /// <summary>The client's address (from a known proxy, its X-Forwarded-For).</summary>
    public abstract IPAddress? RemoteIp { get; }

    /// <summary>The TLS client certificate, when the endpoint asked for one and the device sent one.</summary>
    public abstract X509Certificate2? ClientCertificate { get; }

    /// <summary>A well-formed WebSocket upgrade (version 13, a valid key) that <see cref="AcceptAsync"/> can answer with 101.</summary>
    public abstract bool IsWebSocketRequest { get; }

    /// <summary>The subprotocols the client offered, in its order.</summary>
    public abstract IList<string> RequestedProtocols { get; }

    /// <summary>True once a response (refusal or 101) has begun: nothing else may be written then.</summary>
    public abstract bool HasStarted { get; }

    /// <summary>
    /// Answers with <paramref name="status"/> and an RFC 9457 problem body (<c>type</c> handshake_refused, the
    /// <paramref name="title"/>, <c>reason</c> = <paramref name="code"/> when given); a 426 also names the upgrade
    /// and version 13 (RFC 6455 §4.4).
    /// </summary>
    public abstract Task RefuseAsync(int status, string? code, string title, int? retryAfterSeconds);

    /// <summary>Answers 101 with <paramref name="subprotocol"/> (or none) and returns the framework's WebSocket on the connection.</summary>
    public abstract Task<WebSocket> AcceptAsync(string? subprotocol, WebSocketsOptions options);

    /// <summary>The token: the <c>Authorization: Bearer</c> header wins over the <c>access_token</c> query parameter (which browsers need).</summary>
    public string? Token()
    {
        if (Auth.BearerToken.From(Header("Authorization")) is { } header) return header;
        var query = Query("access_token");
        return query.Count == 1 && !string.IsNullOrEmpty(query[0]) ? query[0] : null;
    }

    /// <summary>The RFC 9457 problem body both paths write for a refused upgrade.</summary>
    internal static byte[] ProblemJson(int status, string? code, string title)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(128);
        using (var json = new System.Text.Json.Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteString("type", "handshake_refused");
            json.WriteString("title", title);
            json.WriteNumber("status", status);
            if (code is not null) json.WriteString("reason", code);
            json.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }
}

/// <summary>An upgrade that came through ASP.NET Core's HTTP pipeline and its WebSocket middleware.</summary>
internal sealed class HttpUpgrade(HttpContext context) : DeviceUpgrade
{
    public override string Via => "http";
    public override StringValues Query(string name) => context.Request.Query[name];
    public override string Header(string name) => context.Request.Headers[name].ToString();
    public override bool IsGet => HttpMethods.IsGet(context.Request.Method);
    public override bool IsHttp11OrLater => !HttpProtocol.IsHttp10(context.Request.Protocol);
    public override bool IsHttps => context.Request.IsHttps;
    public override HostString Host => context.Request.Host;
    public override IPAddress? RemoteIp => context.Connection.RemoteIpAddress;
    public override X509Certificate2? ClientCertificate => context.Connection.ClientCertificate;
    public override bool IsWebSocketRequest => context.WebSockets.IsWebSocketRequest;
    public override IList<string> RequestedProtocols => context.WebSockets.WebSocketRequestedProtocols;
    public override bool HasStarted => context.Response.HasStarted;

    public override Task RefuseAsync(int status, string? code, string title, int? retryAfterSeconds)
    {
        var response = context.Response;
        if (retryAfterSeconds is { } seconds) response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        if (status == StatusCodes.Status426UpgradeRequired)
        {
            response.Headers.Upgrade = "websocket";
            response.Headers.SecWebSocketVersion = "13";
        }
        response.StatusCode = status;
        response.ContentType = "application/problem+json";
        var body = ProblemJson(status, code, title);
        response.ContentLength = body.Length;
        return response.Body.WriteAsync(body).AsTask();
    }

    public override Task<WebSocket> AcceptAsync(string? subprotocol, WebSocketsOptions options) =>
        context.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext
        {
            KeepAliveInterval = options.KeepAliveInterval,
            KeepAliveTimeout = options.KeepAliveTimeout,
            SubProtocol = subprotocol,
            // permessage-deflate only when configured; the read loop limits the decompressed size like the wire size.
            DangerousEnableCompression = options.EnableCompression,
        });
}
