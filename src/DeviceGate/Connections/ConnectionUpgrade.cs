using System.Buffers;
using System.Net;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Primitives;

namespace DeviceGate.Connections;

/// <summary>
/// A device upgrade answered at the connection level: the request head was read and checked by
/// <see cref="ConnectionLevelUpgrades"/>, the answer (a refusal with its problem body, or the 101) is written straight
/// to the connection, and the WebSocket is the framework's (<see cref="WebSocket.CreateFromStream(Stream, WebSocketCreationOptions)"/>)
/// on the connection's own pipes. No HTTP request, context or header collection stays alive behind the device.
/// </summary>
internal sealed class ConnectionUpgrade : DeviceUpgrade
{
    private static readonly byte[] AcceptGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"u8.ToArray();

    private readonly ConnectionContext _connection;
    private UpgradeRequestHead? _head;
    private Dictionary<string, StringValues>? _query;
    private List<string>? _protocols;
    private readonly bool _https;

    public ConnectionUpgrade(ConnectionContext connection, UpgradeRequestHead head, IReadOnlySet<IPAddress> knownProxies)
    {
        _connection = connection;
        _head = head;
        _https = connection.Features.Get<ITlsHandshakeFeature>() is not null;
        RemoteIp = (connection.RemoteEndPoint as IPEndPoint)?.Address;
        if (RemoteIp is { } peer && knownProxies.Count > 0 && knownProxies.Contains(peer.IsIPv4MappedToIPv6 ? peer.MapToIPv4() : peer))
        {
            // As the forwarded-headers middleware does with its limit of one: the nearest entry, from a proxy we believe.
            if (Last(head["X-Forwarded-For"]) is { } forwarded && IPEndPoint.TryParse(forwarded, out var client)) RemoteIp = client.Address;
            if (Last(head["X-Forwarded-Proto"]) is { } proto) _https = string.Equals(proto, "https", StringComparison.OrdinalIgnoreCase);
        }
        IsWebSocketRequest = IsGet && IsHttp11OrLater && HasToken(head["Connection"], "upgrade") && HasToken(head["Upgrade"], "websocket")
            && head["Sec-WebSocket-Version"] == "13" && Handshake.IsValidKey(head["Sec-WebSocket-Key"])
            && head["Content-Length"] is "" or "0" && head["Transfer-Encoding"].Length == 0;
    }

    /// <summary>The WebSocket once accepted (its state after the run tells a clean close from an abort).</summary>
    public WebSocket? Socket { get; private set; }

    private UpgradeRequestHead Head => _head ?? throw new InvalidOperationException("the upgrade was answered");

    public override string Via => "connection";

    public override StringValues Query(string name)
    {
        _query ??= QueryHelpers.ParseNullableQuery(Head.QueryString) ?? new Dictionary<string, StringValues>();
        return _query.TryGetValue(name, out var values) ? values : StringValues.Empty;
    }

    public override string Header(string name) => Head[name];
    public override bool IsGet => Head.IsGet;
    public override bool IsHttp11OrLater => Head.IsHttp11;
    public override bool IsHttps => _https;
    public override HostString Host => new(Head["Host"]);
    public override IPAddress? RemoteIp { get; }
    public override X509Certificate2? ClientCertificate => _connection.Features.Get<ITlsConnectionFeature>()?.ClientCertificate;
    public override bool IsWebSocketRequest { get; }
    public override bool HasStarted => _head is null;

    public override IList<string> RequestedProtocols => _protocols ??= Head["Sec-WebSocket-Protocol"]
        .Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToList();

    public override async Task RefuseAsync(int status, string? code, string title, int? retryAfterSeconds)
    {
        Forget();
        await WriteRefusalAsync(_connection.Transport.Output, status, code, title, retryAfterSeconds).ConfigureAwait(false);
    }

    public override async Task<WebSocket> AcceptAsync(string? subprotocol, WebSocketsOptions options)
    {
        var key = Head["Sec-WebSocket-Key"];
        Forget();
        var response = new StringBuilder(160)
            .Append("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: ")
            .Append(AcceptValue(key)).Append("\r\n");
        if (subprotocol is not null) response.Append("Sec-WebSocket-Protocol: ").Append(subprotocol).Append("\r\n");
        response.Append("\r\n");
        var output = _connection.Transport.Output;
        await output.WriteAsync(Encoding.ASCII.GetBytes(response.ToString())).ConfigureAwait(false);
        Socket = WebSocket.CreateFromStream(new ConnectionStream(_connection), new WebSocketCreationOptions
        {
            IsServer = true,
            SubProtocol = subprotocol,
            KeepAliveInterval = options.KeepAliveInterval,
            KeepAliveTimeout = options.KeepAliveTimeout,
        });
        return Socket;
    }

    /// <summary>Drops the request head (and the token in it): the answer has begun, nothing may read it any more.</summary>
    private void Forget()
    {
        _head?.Forget();
        _head = null;
        _query = null;
        _protocols = null;
    }

    /// <summary>A refusal on the connection: the status, the problem body both paths write, <c>Connection: close</c>.</summary>
    internal static async Task WriteRefusalAsync(System.IO.Pipelines.PipeWriter output, int status, string? code, string title, int? retryAfterSeconds)
    {
        var body = ProblemJson(status, code, title);
        var head = new StringBuilder(256)
            .Append("HTTP/1.1 ").Append(status).Append(' ').Append(ReasonPhrases.GetReasonPhrase(status)).Append("\r\n")
            .Append("Content-Type: application/problem+json\r\nContent-Length: ").Append(body.Length).Append("\r\nConnection: close\r\n");
        if (retryAfterSeconds is { } seconds) head.Append("Retry-After: ").Append(seconds).Append("\r\n");
        if (status == StatusCodes.Status426UpgradeRequired) head.Append("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
        head.Append("\r\n");
        await output.WriteAsync(Encoding.ASCII.GetBytes(head.ToString())).ConfigureAwait(false);
        await output.WriteAsync(body).ConfigureAwait(false);
    }

    internal static string AcceptValue(string key)
    {
        Span<byte> input = stackalloc byte[24 + 36];
        Encoding.ASCII.GetBytes(key, input);
        AcceptGuid.CopyTo(input[24..]);
        Span<byte> hash = stackalloc byte[20];
        SHA1.HashData(input, hash);
        return Convert.ToBase64String(hash);
    }

    private static string? Last(string header)
    {
        var comma = header.LastIndexOf(',');
        var last = (comma < 0 ? header : header[(comma + 1)..]).Trim();
        return last.Length == 0 ? null : last;
    }

    private static bool HasToken(string header, string token)
    {
        foreach (var part in header.Split(','))
        {
            if (string.Equals(part.Trim(), token, StringComparison.OrdinalIgnoreCase)) return true;
        }
        return false;
    }
}

/// <summary>
/// The connection's pipes as the <see cref="Stream"/> the framework's WebSocket reads and writes. A zero-byte read
/// waits for data without taking a buffer (what lets an idle device hold none); disposing it (the WebSocket's abort)
/// ends a pending read or flush at once.
/// </summary>
internal sealed class ConnectionStream(ConnectionContext connection) : Stream
{
    private readonly System.IO.Pipelines.PipeReader _input = connection.Transport.Input;
    private readonly System.IO.Pipelines.PipeWriter _output = connection.Transport.Output;
    private volatile bool _disposed;

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override bool CanSeek => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var result = await _input.ReadAsync(cancellationToken).ConfigureAwait(false);
            var data = result.Buffer;
            if (result.IsCanceled)
            {
                _input.AdvanceTo(data.Start);
                throw new OperationCanceledException("the connection's stream was disposed");
            }
            if (!data.IsEmpty)
            {
                var count = (int)Math.Min(data.Length, buffer.Length);
                data.Slice(0, count).CopyTo(buffer.Span);
                _input.AdvanceTo(data.GetPosition(count));
                return count;
            }
            _input.AdvanceTo(data.End);
            if (result.IsCompleted) return 0;
        }
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var result = await _output.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
        if (result.IsCanceled) throw new OperationCanceledException("the connection's stream was disposed");
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async Task FlushAsync(CancellationToken cancellationToken)
    {
        var result = await _output.FlushAsync(cancellationToken).ConfigureAwait(false);
        if (result.IsCanceled) throw new OperationCanceledException("the connection's stream was disposed");
    }

    public override void Flush() => throw new NotSupportedException("synchronous I/O");
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("synchronous I/O");
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException("synchronous I/O");
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing && !_disposed)
        {
            _disposed = true;
            _input.CancelPendingRead();
            _output.CancelPendingFlush();
        }
        base.Dispose(disposing);
    }
}
