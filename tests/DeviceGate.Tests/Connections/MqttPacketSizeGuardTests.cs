using DeviceGate.Connections;
using DeviceGate.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using MQTTnet.Formatter;
using MQTTnet.Packets;

namespace DeviceGate.Tests.Connections;

/// <summary>The guard reads only fixed headers: packets MQTTnet encodes pass whole, however the reads split them; an announced length over the limit stops it.</summary>
public sealed class MqttPacketSizeGuardTests
{
    private static MqttPacketSizeGuard Guard(int max) => new(null!, max, NullLogger.Instance, new LogLimiter(TimeProvider.System));

    private static byte[] Encode(MqttPacket packet) =>
        new MqttPacketFormatterAdapter(MqttProtocolVersion.V500, new MqttBufferWriter(4096, 65535)).Encode(packet).Join().ToArray();

    private static byte[] Stream(params MqttPacket[] packets) => packets.SelectMany(Encode).ToArray();

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    [InlineData(4096)]
    public void Packets_under_the_limit_pass_in_reads_of_any_size(int chunk)
    {
        var bytes = Stream(
            new MqttConnectPacket { ClientId = "d1", KeepAlivePeriod = 60 },
            new MqttPingReqPacket(),
            new MqttPublishPacket { Topic = "devices/d1/events", PayloadSegment = new byte[20_000] },
            new MqttPingReqPacket(),
            new MqttPublishPacket { Topic = "devices/d1/events", PayloadSegment = new byte[130] });
        var guard = Guard(21_000);
        for (var i = 0; i < bytes.Length; i += chunk) Assert.True(guard.Inspect(bytes.AsSpan(i, Math.Min(chunk, bytes.Length - i))));
    }

    [Fact]
    public void A_packet_over_the_limit_is_refused_from_its_length_bytes_whatever_follows()
    {
        var publish = Encode(new MqttPublishPacket { Topic = "t", PayloadSegment = new byte[20_000] });
        Assert.False(Guard(19_999).Inspect(publish.AsSpan(0, 4)));
        // Split: the type byte in one read, the length in the next.
        var guard = Guard(19_999);
        Assert.True(guard.Inspect(publish.AsSpan(0, 1)));
        Assert.False(guard.Inspect(publish.AsSpan(1, 3)));
        // After a good packet: the next header is judged on its own.
        var after = Guard(1000);
        Assert.True(after.Inspect(Encode(new MqttPingReqPacket())));
        Assert.False(after.Inspect(new byte[] { 0x30, 0xFF, 0xFF, 0xFF, 0x7F }));
        // A fifth length byte is never valid.
        Assert.False(Guard(int.MaxValue).Inspect(new byte[] { 0x30, 0x80, 0x80, 0x80, 0x80, 0x01 }));
    }

    [Fact]
    public async Task A_packet_up_to_the_join_size_goes_out_in_one_write_and_a_larger_one_as_mqttnet_splits_it()
    {
        // MQTTnet's own adapter with fragmentation on (as on TCP) writes a PUBLISH as its packet, then its payload.
        var channel = new RecordingChannel();
        using var adapter = new MQTTnet.Adapter.MqttChannelAdapter(new MqttPacketSizeGuard(channel, 1 << 20, NullLogger.Instance, new LogLimiter(TimeProvider.System)),
            new MqttPacketFormatterAdapter(MqttProtocolVersion.V500, new MqttBufferWriter(4096, 65535)), MQTTnet.Diagnostics.Logger.MqttNetNullLogger.Instance)
        {
            AllowPacketFragmentation = true,
        };
        MqttPacket[] packets =
        [
            new MqttPublishPacket { Topic = "devices/d1/messages", PayloadSegment = new byte[16], QualityOfServiceLevel = MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce, PacketIdentifier = 1 },
            new MqttPubAckPacket { PacketIdentifier = 7 },
            new MqttPublishPacket { Topic = "devices/d1/messages", PayloadSegment = Enumerable.Range(0, 20_000).Select(i => (byte)i).ToArray() },
            new MqttPublishPacket { Topic = "devices/d1/messages", PayloadSegment = new byte[MqttPacketSizeGuard.JoinBytes - 64] },
        ];
        foreach (var packet in packets) await adapter.SendPacketAsync(packet, CancellationToken.None);

        Assert.Equal([1, 1, 2, 1], channel.PacketWrites);
        Assert.Equal(packets.SelectMany(Encode).ToArray(), channel.Bytes.ToArray());
    }

    /// <summary>Records what is written, and how many writes each packet took.</summary>
    private sealed class RecordingChannel : MQTTnet.Channel.IMqttChannel
    {
        private int _writes;
        public List<byte> Bytes { get; } = [];
        public List<int> PacketWrites { get; } = [];
        public System.Security.Cryptography.X509Certificates.X509Certificate2 ClientCertificate => null!;
        public System.Net.EndPoint RemoteEndPoint => new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 1);
        public System.Net.EndPoint LocalEndPoint => RemoteEndPoint;
        public bool IsSecureConnection => false;
        public Task ConnectAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task DisconnectAsync(CancellationToken cancellationToken) => Task.CompletedTask;
        public Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => Task.FromResult(0);

        public Task WriteAsync(System.Buffers.ReadOnlySequence<byte> buffer, bool isEndOfPacket, CancellationToken cancellationToken)
        {
            Bytes.AddRange(System.Buffers.BuffersExtensions.ToArray(buffer));
            _writes++;
            if (isEndOfPacket)
            {
                PacketWrites.Add(_writes);
                _writes = 0;
            }
            return Task.CompletedTask;
        }

        public void Dispose()
        {
        }
    }
}
