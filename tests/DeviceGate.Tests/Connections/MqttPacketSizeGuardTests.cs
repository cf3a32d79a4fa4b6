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
}
