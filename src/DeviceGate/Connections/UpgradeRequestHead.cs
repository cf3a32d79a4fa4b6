using System.Buffers;
using System.Text;
using Microsoft.AspNetCore.Server.Kestrel.Core.Internal.Http;
using KestrelHttpMethod = Microsoft.AspNetCore.Server.Kestrel.Core.Internal.Http.HttpMethod;
using KestrelHttpVersion = Microsoft.AspNetCore.Server.Kestrel.Core.Internal.Http.HttpVersion;

namespace DeviceGate.Connections;

/// <summary>
/// The head of an HTTP/1.1 request read at the connection level, parsed by Kestrel's own HTTP/1.x parser
/// (<see cref="HttpParser{TRequestHandler}"/>: the same grammar, the same 400s, as the HTTP pipeline) with Kestrel's
/// limits applied around it: request line (414), header count and total size (431). Only the headers a device upgrade
/// needs are kept (values decoded as UTF-8, control characters refused with 400); the others are counted and checked.
/// </summary>
internal sealed class UpgradeRequestHead : IHttpHeadersHandler, IHttpRequestLineHandler
{
    private static readonly string[] Kept =
    [
        "Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol",
        "Origin", "Authorization", "X-Forwarded-For", "X-Forwarded-Proto", "Content-Length", "Transfer-Encoding",
    ];

    private readonly string?[] _values = new string?[Kept.Length];
    private readonly int _maxHeaderCount;
    private int _headerCount;

    public UpgradeRequestHead(int maxHeaderCount) => _maxHeaderCount = maxHeaderCount;

    public bool IsGet { get; private set; }
    public bool IsHttp11 { get; private set; }

    /// <summary>The query string with its <c>?</c>, as sent (still percent-encoded), or "".</summary>
    public string QueryString { get; private set; } = "";

    public bool StartLineDone { get; private set; }
    public bool Complete { get; private set; }

    /// <summary>A kept header's value ("" when absent).</summary>
    public string this[string name]
    {
        get
        {
            // A loop, not Array.FindIndex with a lambda: that would allocate a closure on each of a handshake's lookups.
            for (var i = 0; i < Kept.Length; i++)
            {
                if (string.Equals(Kept[i], name, StringComparison.OrdinalIgnoreCase)) return _values[i] ?? "";
            }
            throw new ArgumentException($"{name} is not kept", nameof(name));
        }
    }

    public void OnStartLine(HttpVersionAndMethod versionAndMethod, TargetOffsetPathLength targetPath, Span<byte> startLine)
    {
        IsGet = versionAndMethod.Method == KestrelHttpMethod.Get;
        IsHttp11 = versionAndMethod.Version == KestrelHttpVersion.Http11;
        var target = startLine[targetPath.Offset..];
        // The target is printable ASCII (RFC 9112 §3.2: percent-encoding carries everything else).
        foreach (var b in target)
        {
            if (b is <= 0x20 or >= 0x7F) throw new BadRequest("invalid character in the request target");
        }
        // The path is /ws or /ws/echo: the first bytes said so before this parser ran.
        QueryString = Encoding.ASCII.GetString(target[targetPath.Length..]);
        StartLineDone = true;
    }

    public void OnHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        if (++_headerCount > _maxHeaderCount) throw new TooLarge("too many request headers");
        foreach (var b in value)
        {
            // Kestrel's parser leaves value characters to its caller; like the HTTP pipeline, refuse NUL and control characters.
            if (b is < 0x20 and not (byte)'\t' or 0x7F) throw new BadRequest("invalid character in a request header");
        }
        for (var i = 0; i < Kept.Length; i++)
        {
            if (!Ascii.EqualsIgnoreCase(name, Kept[i])) continue;
            string text;
            try
            {
                text = Strict.GetString(value);
            }
            catch (DecoderFallbackException)
            {
                throw new BadRequest("a request header is not UTF-8");
            }
            _values[i] = _values[i] is { } earlier ? earlier + "," + text : text;
            return;
        }
    }

    public void OnHeadersComplete(bool endStream) => Complete = true;

    // HPACK/QPACK only (HTTP/2 and 3): never called for an HTTP/1.x request.
    public void OnStaticIndexedHeader(int index) => throw new BadRequest("unexpected header encoding");

    public void OnStaticIndexedHeader(int index, ReadOnlySpan<byte> value) => throw new BadRequest("unexpected header encoding");

    /// <summary>Forgets every header value (the token among them), once the upgrade has been answered.</summary>
    public void Forget() => Array.Clear(_values);

    private static readonly UTF8Encoding Strict = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>A malformed request: 400.</summary>
    internal sealed class BadRequest(string message) : Exception(message);

    /// <summary>Over a header limit: 431.</summary>
    internal sealed class TooLarge(string message) : Exception(message);

    /// <summary>
    /// Parses what <paramref name="buffer"/> holds onward from the last call; returns where parsing stopped (the start
    /// of an incomplete line). Throws Kestrel's BadHttpRequestException, <see cref="BadRequest"/> or <see cref="TooLarge"/>.
    /// </summary>
    public SequencePosition Parse(HttpParser<UpgradeRequestHead> parser, ReadOnlySequence<byte> buffer)
    {
        var reader = new SequenceReader<byte>(buffer);
        if (!StartLineDone && !parser.ParseRequestLine(this, ref reader)) return reader.Position;
        if (!Complete) parser.ParseHeaders(this, ref reader);
        return reader.Position;
    }
}
