using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;

namespace DeviceGate.Tests.Infrastructure;

/// <summary>
/// A deliberately hand-made WebSocket client for hostile-input tests: it sends what a real client library
/// refuses to (unmasked frames, reserved bits, absurd lengths, endless fragments). Test code only.
/// </summary>
public sealed class RawWebSocket : IDisposable
{
    private readonly TcpClient _tcp;
    private readonly NetworkStream _stream;

    private RawWebSocket(TcpClient tcp)
    {
        _tcp = tcp;
        _stream = tcp.GetStream();
    }

    public NetworkStream Stream => _stream;

    /// <summary>Opens a TCP connection and completes the upgrade; fails unless the server answers 101.</summary>
    public static async Task<RawWebSocket> ConnectAsync(Uri baseUri, string pathAndQuery, string? bearer = null)
    {
        var ws = await OpenAsync(baseUri);
        var request = $"GET /{pathAndQuery} HTTP/1.1\r\nHost: {baseUri.Authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
                      (bearer is null ? "" : $"Authorization: Bearer {bearer}\r\n") + "\r\n";
        await ws.WriteAsync(Encoding.ASCII.GetBytes(request));
        var head = await ws.ReadHeadAsync();
        Assert.StartsWith("HTTP/1.1 101", head);
        return ws;
    }

    public static async Task<RawWebSocket> OpenAsync(Uri baseUri)
    {
        var tcp = new TcpClient { NoDelay = true };
        await tcp.ConnectAsync(baseUri.Host, baseUri.Port).WaitAsync(Timeouts.Default);
        return new RawWebSocket(tcp);
    }

    public async Task WriteAsync(byte[] bytes)
    {
        using var cts = new CancellationTokenSource(Timeouts.Default);
        await _stream.WriteAsync(bytes, cts.Token);
    }

    /// <summary>Reads the HTTP response head (up to the blank line).</summary>
    public async Task<string> ReadHeadAsync()
    {
        using var cts = new CancellationTokenSource(Timeouts.Default);
        var head = new List<byte>();
        var one = new byte[1];
        while (!EndsWithBlankLine(head))
        {
            if (await _stream.ReadAsync(one, cts.Token) == 0) break;
            head.Add(one[0]);
        }
        return Encoding.ASCII.GetString(head.ToArray());
    }

    private static bool EndsWithBlankLine(List<byte> b) =>
        b.Count >= 4 && b[^4] == '\r' && b[^3] == '\n' && b[^2] == '\r' && b[^1] == '\n';

    /// <summary>One frame, masked unless told otherwise; <paramref name="announcedLength"/> lies about the payload size.</summary>
    public static byte[] Frame(int opcode, ReadOnlySpan<byte> payload, bool fin = true, bool masked = true, int rsv = 0, ulong? announcedLength = null)
    {
        var length = announcedLength ?? (ulong)payload.Length;
        var frame = new List<byte> { (byte)((fin ? 0x80 : 0) | (rsv << 4) | opcode) };
        var maskBit = masked ? 0x80 : 0;
        if (length < 126) frame.Add((byte)(maskBit | (int)length));
        else if (length <= ushort.MaxValue)
        {
            frame.Add((byte)(maskBit | 126));
            frame.Add((byte)(length >> 8));
            frame.Add((byte)length);
        }
        else
        {
            frame.Add((byte)(maskBit | 127));
            var len = new byte[8];
            BinaryPrimitives.WriteUInt64BigEndian(len, length);
            frame.AddRange(len);
        }
        byte[] mask = [0x11, 0x22, 0x33, 0x44];
        if (masked) frame.AddRange(mask);
        for (var i = 0; i < payload.Length; i++) frame.Add(masked ? (byte)(payload[i] ^ mask[i % 4]) : payload[i]);
        return frame.ToArray();
    }

    /// <summary>Reads frames until a close frame and returns its code, or null when the connection just ended.</summary>
    public async Task<int?> ReadCloseCodeAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? Timeouts.Default);
        try
        {
            while (true)
            {
                var header = await ReadExactlyAsync(2, cts.Token);
                if (header is null) return null;
                var opcode = header[0] & 0x0f;
                ulong length = (ulong)(header[1] & 0x7f);
                if (length == 126) length = BinaryPrimitives.ReadUInt16BigEndian(await ReadExactlyAsync(2, cts.Token));
                else if (length == 127) length = BinaryPrimitives.ReadUInt64BigEndian(await ReadExactlyAsync(8, cts.Token));
                var payload = length == 0 ? [] : await ReadExactlyAsync((int)length, cts.Token);
                if (payload is null) return null;
                if (opcode == 0x8) return payload.Length >= 2 ? BinaryPrimitives.ReadUInt16BigEndian(payload) : 1005;
            }
        }
        catch (IOException)
        {
            return null;
        }
    }

    private async Task<byte[]?> ReadExactlyAsync(int count, CancellationToken ct)
    {
        var buffer = new byte[count];
        var read = 0;
        while (read < count)
        {
            var n = await _stream.ReadAsync(buffer.AsMemory(read), ct);
            if (n == 0) return null;
            read += n;
        }
        return buffer;
    }

    public void Dispose() => _tcp.Dispose();
}
