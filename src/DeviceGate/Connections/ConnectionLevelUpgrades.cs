using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.WebSockets;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Core.Internal.Http;
using Microsoft.Extensions.Options;

namespace DeviceGate.Connections;

/// <summary>
/// The Kestrel connection middleware behind <c>DeviceGate:WebSockets:ConnectionLevelUpgrade</c>: it looks at the
/// first bytes of each connection (without consuming them) and, for a device upgrade (<c>GET /ws?</c>,
/// <c>GET /ws/echo</c>), reads the request head itself, runs the same endpoint as the HTTP pipeline does through a
/// <see cref="ConnectionUpgrade"/>, and answers on the connection. Every other connection (the API, the dashboard, the
/// event stream, <c>/mqtt</c>, TLS handshakes it sits in front of, HTTP/2) goes on, untouched, to Kestrel's HTTP layer.
/// What an HTTP request would keep alive for the device's whole life (the request's state machines, its header
/// collections and strings, the Authorization header with the token, the HttpContext) never exists.
/// </summary>
internal sealed class ConnectionLevelUpgrades(
    DeviceEndpoint devices,
    EchoEndpoint echo,
    IOptions<GatewayOptions> options,
    IOptions<KestrelServerOptions> kestrel,
    LogLimiter logLimiter,
    TimeProvider time,
    ILogger<ConnectionLevelUpgrades> logger)
{
    private enum Route { Http, Device, Echo }

    private static readonly HttpParser<UpgradeRequestHead> Parser = new(showErrorDetails: false);
    private static readonly (byte[] Prefix, Route Route)[] DevicePrefixes = [("GET /ws?"u8.ToArray(), Route.Device), ("GET /ws "u8.ToArray(), Route.Device)];
    private static readonly (byte[] Prefix, Route Route)[] AllPrefixes =
        [.. DevicePrefixes, ("GET /ws/echo?"u8.ToArray(), Route.Echo), ("GET /ws/echo "u8.ToArray(), Route.Echo)];
    private const int LongestPrefix = 13;

    // The first bytes that make a connection ours: the echo endpoint's only when it is served.
    private readonly (byte[] Prefix, Route Route)[] _prefixes = options.Value.WebSockets.EnableEcho ? AllPrefixes : DevicePrefixes;
    private readonly IReadOnlySet<IPAddress> _knownProxies = options.Value.Network.KnownProxies.Select(IPAddress.Parse).ToHashSet();

    /// <summary>Whether device upgrades are answered here: on by default; permessage-deflate stays with the HTTP pipeline's WebSocket middleware.</summary>
    public bool IsEnabled { get; } = options.Value.WebSockets.ConnectionLevelUpgrade && !options.Value.WebSockets.EnableCompression;

    public async Task OnConnectionAsync(ConnectionContext connection, ConnectionDelegate next)
    {
        var limits = kestrel.Value.Limits;
        Route route;
        try
        {
            // Kestrel waits this long for a new connection's first request; so does the look at its first bytes. A
            // shutdown ends the wait at once, as Kestrel closes an idle HTTP connection (a browser's preconnect
            // would otherwise hold up the shutdown until Kestrel's own deadline aborts it).
            using var idle = new CancellationTokenSource(limits.KeepAliveTimeout, time);
            using var closing = connection.Features.Get<IConnectionLifetimeNotificationFeature>()?.ConnectionClosedRequested
                .UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), idle);
            route = await SniffAsync(connection.Transport.Input, idle.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            // Timed out, shut down, reset or aborted (ConnectionResetException is an IOException,
            // ConnectionAbortedException an OperationCanceledException): nothing to answer.
            return;
        }
        if (route == Route.Http)
        {
            await next(connection).ConfigureAwait(false);
            return;
        }

        // One async frame for the whole life of the device (not one per step): it is kept per connection.
        var upgrade = await ReadUpgradeAsync(connection, limits).ConfigureAwait(false);
        if (upgrade is null) return;
        try
        {
            await (route == Route.Device ? devices.HandleAsync(upgrade) : echo.HandleAsync(upgrade)).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            if (logLimiter.ShouldLog("connection_upgrade", out var suppressed)) Log.ConnectionUpgradeFailed(logger, upgrade.RemoteIp?.ToString(), suppressed, e);
            connection.Abort(new ConnectionAbortedException("the device upgrade failed"));
            return;
        }
        if (upgrade.Socket is { } socket)
        {
            // A close handshake that finished lets Kestrel close the connection gracefully; anything else is dropped.
            if (socket.State != WebSocketState.Closed) connection.Abort(new ConnectionAbortedException("the WebSocket was aborted"));
        }
    }

    /// <summary>Reads until the first bytes say whether this is a device upgrade; consumes nothing, so the HTTP layer sees them all.</summary>
    private async Task<Route> SniffAsync(PipeReader input, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var route = Classify(buffer, out var decided);
            if (decided || result.IsCompleted)
            {
                // Nothing consumed or examined: the next reader gets these bytes at once.
                input.AdvanceTo(buffer.Start);
                return decided ? route : Route.Http;
            }
            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private Route Classify(ReadOnlySequence<byte> buffer, out bool decided)
    {
        Span<byte> first = stackalloc byte[LongestPrefix];
        var length = (int)Math.Min(buffer.Length, LongestPrefix);
        buffer.Slice(0, length).CopyTo(first);
        first = first[..length];
        var undecided = false;
        foreach (var (prefix, route) in _prefixes)
        {
            if (first.StartsWith(prefix))
            {
                decided = true;
                return route;
            }
            if (first.Length < prefix.Length && prefix.AsSpan().StartsWith(first)) undecided = true;
        }
        decided = !undecided;
        return Route.Http;
    }

    /// <summary>The upgrade, once its head was read and is well-formed; null when it was refused as malformed HTTP or the client left.</summary>
    private async Task<ConnectionUpgrade?> ReadUpgradeAsync(ConnectionContext connection, KestrelServerLimits limits)
    {
        var head = new UpgradeRequestHead(limits.MaxRequestHeaderCount);
        var (status, problem) = await ReadHeadAsync(connection.Transport.Input, head, limits).ConfigureAwait(false);
        if (status < 0) return null; // the client went away mid-request
        if (status > 0)
        {
            if (logLimiter.ShouldLog("malformed_upgrade", out var suppressed))
            {
                Log.MalformedUpgrade(logger, status, problem!, (connection.RemoteEndPoint as IPEndPoint)?.Address.ToString(), suppressed);
            }
            await RefuseAndCloseAsync(connection, status, problem!).ConfigureAwait(false);
            return null;
        }
        return new ConnectionUpgrade(connection, head, _knownProxies);
    }

    /// <summary>Reads the request head within Kestrel's RequestHeadersTimeout and limits; (0, null) when it is complete, -1 when the client left.</summary>
    private async Task<(int Status, string? Problem)> ReadHeadAsync(PipeReader input, UpgradeRequestHead head, KestrelServerLimits limits)
    {
        using var deadline = new CancellationTokenSource(limits.RequestHeadersTimeout, time);
        long headerBytes = 0;
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(deadline.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                var hadStartLine = head.StartLineDone;
                var stop = head.Parse(Parser, buffer);
                var consumed = buffer.Slice(0, stop).Length;
                if (hadStartLine) headerBytes += consumed;
                else if (head.StartLineDone)
                {
                    // The start line and the headers after it in this buffer: Kestrel counts only the headers' bytes.
                    var lineEnd = buffer.PositionOf((byte)'\n') ?? buffer.Start;
                    var requestLineBytes = buffer.Slice(0, lineEnd).Length + 1;
                    headerBytes += consumed - requestLineBytes;
                    if (requestLineBytes > limits.MaxRequestLineSize)
                    {
                        input.AdvanceTo(buffer.End);
                        return (StatusCodes.Status414UriTooLong, "request line too long");
                    }
                }
                var pending = head.Complete ? 0 : buffer.Length - consumed;
                if (!head.StartLineDone && pending > limits.MaxRequestLineSize)
                {
                    input.AdvanceTo(buffer.End);
                    return (StatusCodes.Status414UriTooLong, "request line too long");
                }
                if (head.StartLineDone && headerBytes + pending > limits.MaxRequestHeadersTotalSize)
                {
                    input.AdvanceTo(buffer.End);
                    return (StatusCodes.Status431RequestHeaderFieldsTooLarge, "request headers too large");
                }
                if (head.Complete)
                {
                    input.AdvanceTo(stop);
                    return (0, null);
                }
                if (result.IsCompleted)
                {
                    input.AdvanceTo(buffer.End);
                    return (-1, null);
                }
                input.AdvanceTo(stop, buffer.End);
            }
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            return (StatusCodes.Status408RequestTimeout, "request headers not received in time");
        }
        catch (UpgradeRequestHead.TooLarge e)
        {
            return (StatusCodes.Status431RequestHeaderFieldsTooLarge, e.Message);
        }
        catch (UpgradeRequestHead.BadRequest e)
        {
            return (StatusCodes.Status400BadRequest, e.Message);
        }
        catch (Microsoft.AspNetCore.Http.BadHttpRequestException e)
        {
            return (e.StatusCode, "malformed request");
        }
        catch (Exception e) when (e is IOException or ConnectionAbortedException)
        {
            return (-1, null);
        }
    }

    /// <summary>A malformed request: its status and problem body (no handshake reason: it never was a handshake), then the connection closes.</summary>
    private static async Task RefuseAndCloseAsync(ConnectionContext connection, int status, string problem)
    {
        try
        {
            await ConnectionUpgrade.WriteRefusalAsync(connection.Transport.Output, status, null, problem, null).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or ConnectionAbortedException or InvalidOperationException)
        {
            // The client is gone already: nobody to answer.
        }
    }
}
