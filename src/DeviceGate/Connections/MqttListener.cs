using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using MQTTnet.Adapter;
using MQTTnet.Channel;
using MQTTnet.Diagnostics.Logger;
using MQTTnet.Formatter;
using MQTTnet.Implementations;
using MQTTnet.Server;

namespace DeviceGate.Connections;

/// <summary>
/// Where MQTT connections come from, for MQTTnet's server: TCP (a listener on DeviceGate:Mqtt:TcpPort) and WebSocket
/// (<c>/mqtt</c>, accepted by ASP.NET Core). MQTTnet's own channels carry the bytes and MQTTnet's adapter reads the
/// packets; each channel is wrapped in a <see cref="MqttPacketSizeGuard"/>, because MQTTnet allocates a packet's
/// whole body from its header before reading it (a 5-byte header announcing 256 MB, before any CONNECT).
/// </summary>
internal sealed class MqttListener(GatewayOptions options, ILogger logger, LogLimiter limiter) : IMqttServerAdapter
{
    // MQTTnet's own sizes for its TCP adapter's packet writer.
    private const int WriterBufferSize = 4096;
    private const int WriterBufferSizeMax = 65535;

    private TcpListener? _tcp;
    private IMqttNetLogger _mqttLogger = MqttNetNullLogger.Instance;
    private readonly CancellationTokenSource _stopping = new();
    private int _openTcp;

    public Func<IMqttChannelAdapter, Task>? ClientHandler { get; set; }

    /// <summary>
    /// The largest packet MQTTnet is let to read: DeviceGate:Limits:MaxMessageBytes of payload plus 64 KiB for the
    /// topic, properties and the CONNECT's token. A publish between the two is read and refused (MQTT 5: 0x95).
    /// </summary>
    public int MaxPacketBytes => options.Limits.MaxMessageBytes + 64 * 1024;

    public Task StartAsync(MqttServerOptions serverOptions, IMqttNetLogger mqttLogger)
    {
        _mqttLogger = mqttLogger;
        var mqtt = options.Mqtt;
        if (mqtt.TcpPort > 0)
        {
            _tcp = new TcpListener(IPAddress.Parse(mqtt.TcpAddress), mqtt.TcpPort);
            _tcp.Server.NoDelay = true;
            _tcp.Start();
            _ = AcceptLoopAsync(_tcp);
        }
        return Task.CompletedTask;
    }

    public Task StopAsync()
    {
        _stopping.Cancel();
        _tcp?.Stop();
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _stopping.Cancel();
        _tcp?.Dispose();
        _stopping.Dispose();
    }

    private async Task AcceptLoopAsync(TcpListener listener)
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptSocketAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                if (_stopping.IsCancellationRequested) return;
                continue;
            }
            // Sockets that have not sent CONNECT yet are held to the connection cap too (admission counts sessions).
            if (Interlocked.Increment(ref _openTcp) > options.Limits.MaxConnections)
            {
                Interlocked.Decrement(ref _openTcp);
                socket.Dispose();
                continue;
            }
            _ = RunTcpAsync(socket);
        }
    }

    private async Task RunTcpAsync(Socket socket)
    {
        try
        {
            socket.NoDelay = true;
            await using var stream = new NetworkStream(socket, ownsSocket: true);
            var channel = new MqttTcpChannel(stream, socket.LocalEndPoint, socket.RemoteEndPoint, null);
            await RunAsync(channel, fragmentation: true).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
            // The connection ended; MQTTnet has seen to the session.
        }
        finally
        {
            Interlocked.Decrement(ref _openTcp);
            socket.Dispose();
        }
    }

    /// <summary>An accepted WebSocket with the <c>mqtt</c> subprotocol, until the connection ends.</summary>
    public Task RunWebSocketAsync(WebSocket socket, HttpContext context)
    {
        var remote = context.Connection.RemoteIpAddress is { } address ? new IPEndPoint(address, context.Connection.RemotePort) : null;
        // One WebSocket message per packet: some browser clients cannot take a packet split over messages.
        return RunAsync(new MqttWebSocketChannel(socket, remote, context.Request.IsHttps, null), fragmentation: false);
    }

    private async Task RunAsync(IMqttChannel channel, bool fragmentation)
    {
        var guarded = new MqttPacketSizeGuard(channel, MaxPacketBytes, logger, limiter);
        using var adapter = new MqttChannelAdapter(guarded, new MqttPacketFormatterAdapter(new MqttBufferWriter(WriterBufferSize, WriterBufferSizeMax)), _mqttLogger)
        {
            AllowPacketFragmentation = fragmentation,
        };
        if (ClientHandler is { } handler) await handler(adapter).ConfigureAwait(false);
    }
}

/// <summary>
/// Watches the bytes MQTTnet reads for each packet's fixed header (a type byte and the remaining length, 1 to 4
/// bytes of variable byte integer) and ends the connection when a packet announces more than the limit, before
/// MQTTnet allocates it. It reads nothing else: the packets themselves are MQTTnet's.
/// </summary>
internal sealed class MqttPacketSizeGuard(IMqttChannel inner, int maxPacketBytes, ILogger logger, LogLimiter limiter) : IMqttChannel
{
    private int _headerByte = -1; // -1: the next byte is a packet's type byte; 0..3: which length byte comes next
    private long _length;
    private long _multiplier;
    private long _bodyLeft;

    public EndPoint RemoteEndPoint => inner.RemoteEndPoint;
    public EndPoint LocalEndPoint => inner.LocalEndPoint;
    public bool IsSecureConnection => inner.IsSecureConnection;
    public System.Security.Cryptography.X509Certificates.X509Certificate2 ClientCertificate => inner.ClientCertificate;

    public Task ConnectAsync(CancellationToken cancellationToken) => inner.ConnectAsync(cancellationToken);
    public Task DisconnectAsync(CancellationToken cancellationToken) => inner.DisconnectAsync(cancellationToken);
    public void Dispose()
    {
        inner.Dispose();
        if (Interlocked.Exchange(ref _head, null) is { } head) System.Buffers.ArrayPool<byte>.Shared.Return(head);
    }

    /// <summary>Up to this many bytes, a packet MQTTnet writes in two parts (the packet, then its payload) goes out in one write.</summary>
    internal const int JoinBytes = 8 * 1024;

    private byte[]? _head;
    private int _headLength;

    /// <summary>
    /// MQTTnet writes a packet with a payload in two calls (the packet, then the payload, so a large payload is not
    /// copied); on TCP without Nagle each becomes a send and a segment of its own. A packet of up to
    /// <see cref="JoinBytes"/> is joined in a pooled buffer and written once; a larger one is written as MQTTnet gives it.
    /// </summary>
    public Task WriteAsync(System.Buffers.ReadOnlySequence<byte> buffer, bool isEndOfPacket, CancellationToken cancellationToken)
    {
        if (_head is null)
        {
            if (isEndOfPacket || buffer.Length >= JoinBytes) return inner.WriteAsync(buffer, isEndOfPacket, cancellationToken);
            // The first part of a packet: kept until its payload comes (MQTTnet writes one packet at a time).
            _head = System.Buffers.ArrayPool<byte>.Shared.Rent(JoinBytes);
            System.Buffers.BuffersExtensions.CopyTo(buffer, _head);
            _headLength = (int)buffer.Length;
            return Task.CompletedTask;
        }
        return WriteAfterHeadAsync(buffer, isEndOfPacket, cancellationToken);
    }

    private async Task WriteAfterHeadAsync(System.Buffers.ReadOnlySequence<byte> buffer, bool isEndOfPacket, CancellationToken cancellationToken)
    {
        // Taken once: Dispose (the connection ending) may return it to the pool meanwhile, and it must not go back twice.
        if (Interlocked.Exchange(ref _head, null) is not { } head)
        {
            await inner.WriteAsync(buffer, isEndOfPacket, cancellationToken).ConfigureAwait(false);
            return;
        }
        var length = _headLength;
        try
        {
            if (length + buffer.Length <= head.Length)
            {
                System.Buffers.BuffersExtensions.CopyTo(buffer, head.AsSpan(length));
                await inner.WriteAsync(new System.Buffers.ReadOnlySequence<byte>(head, 0, length + (int)buffer.Length), isEndOfPacket, cancellationToken).ConfigureAwait(false);
                return;
            }
            await inner.WriteAsync(new System.Buffers.ReadOnlySequence<byte>(head, 0, length), isEndOfPacket: false, cancellationToken).ConfigureAwait(false);
            await inner.WriteAsync(buffer, isEndOfPacket, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(head);
        }
    }

    public async Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
    {
        var read = await inner.ReadAsync(buffer, offset, count, cancellationToken).ConfigureAwait(false);
        if (!Inspect(buffer.AsSpan(offset, read)))
        {
            if (limiter.ShouldLog("mqtt-packet-too-large", out var suppressed))
            {
                Log.MqttPacketTooLarge(logger, (RemoteEndPoint as IPEndPoint)?.Address.ToString(), _length, maxPacketBytes, suppressed);
            }
            inner.Dispose();
            throw new MqttPacketTooLargeException();
        }
        return read;
    }

    /// <summary>False when a packet announced more than the limit.</summary>
    internal bool Inspect(ReadOnlySpan<byte> bytes)
    {
        var i = 0;
        while (i < bytes.Length)
        {
            if (_bodyLeft > 0)
            {
                var skip = (int)Math.Min(_bodyLeft, bytes.Length - i);
                _bodyLeft -= skip;
                i += skip;
                continue;
            }
            var b = bytes[i++];
            if (_headerByte < 0)
            {
                (_headerByte, _length, _multiplier) = (0, 0, 1);
                continue;
            }
            _length += (b & 0x7F) * _multiplier;
            _multiplier *= 128;
            if (_length > maxPacketBytes) return false;
            if ((b & 0x80) != 0)
            {
                // A fifth length byte is malformed: MQTTnet refuses it; the limit has been passed by then anyway.
                if (++_headerByte > 3) return false;
                continue;
            }
            _headerByte = -1;
            _bodyLeft = _length;
        }
        return true;
    }
}

internal sealed class MqttPacketTooLargeException() : IOException("an MQTT packet announced more than the gateway takes");
