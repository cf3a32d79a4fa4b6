using System.Net;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Text;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

/// <summary>Broken and hostile clients. After each, the gateway must still serve a normal device.</summary>
public sealed class HostileInputTests : GatewayTest
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["Kestrel:Limits:RequestHeadersTimeout"] = "00:00:02",
    };

    private async Task StillServesAsync()
    {
        var id = "normal-" + Guid.NewGuid().ToString("N")[..8];
        using var device = await Gw.ConnectAsync(id);
        using var response = await Gw.Api.PostTextAsync($"api/devices/{id}/messages", "still here");
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        Assert.Equal("still here", await device.ReceiveTextAsync());
    }

    private async Task<int?> SendFramesAndReadCloseAsync(params byte[][] frames)
    {
        using var ws = await RawWebSocket.ConnectAsync(Gw.BaseUri, "ws/echo");
        try
        {
            foreach (var f in frames) await ws.WriteAsync(f);
        }
        catch (IOException)
        {
            // The server may close before everything was written; what it said before closing is what counts.
        }
        return await ws.ReadCloseCodeAsync();
    }

    [Fact]
    public async Task A_frame_announcing_2_pow_63_bytes_is_cut_off_at_the_limit()
    {
        // Nothing is allocated for the announced size: bytes are taken as they come, and the limit (64 KiB) ends it.
        var header = RawWebSocket.Frame(0x2, new byte[70_000], announcedLength: long.MaxValue);
        Assert.Equal(1009, await SendFramesAndReadCloseAsync(header));
        await StillServesAsync();
    }

    [Fact]
    public async Task A_hundred_thousand_tiny_fragments_are_cut_off()
    {
        var frames = new List<byte[]> { RawWebSocket.Frame(0x1, "a"u8, fin: false) };
        var continuation = RawWebSocket.Frame(0x0, "b"u8, fin: false);
        var batch = Enumerable.Repeat(continuation, 1000).SelectMany(f => f).ToArray();
        for (var i = 0; i < 100; i++) frames.Add(batch);
        Assert.Equal(1009, await SendFramesAndReadCloseAsync(frames.ToArray()));
        await StillServesAsync();
    }

    [Fact]
    public async Task Endless_empty_fragments_are_cut_off_too()
    {
        var empty = RawWebSocket.Frame(0x0, [], fin: false);
        var batch = Enumerable.Repeat(empty, 5000).SelectMany(f => f).ToArray();
        Assert.Equal(1009, await SendFramesAndReadCloseAsync(RawWebSocket.Frame(0x2, [], fin: false), batch, batch));
        await StillServesAsync();
    }

    [Fact]
    public async Task Invalid_utf8_in_a_text_message_closes_with_1007()
    {
        // As with 1002: the framework resets right after its close frame, which may swallow it (null).
        var code = await SendFramesAndReadCloseAsync(RawWebSocket.Frame(0x1, [0x68, 0xC3, 0x28, 0xFF]));
        Assert.True(code is 1007 or null, $"closed with {code}");
        await StillServesAsync();
    }

    [Theory]
    [InlineData("unmasked")]
    [InlineData("rsv")]
    [InlineData("opcode")]
    [InlineData("fragmented-control")]
    public async Task Protocol_violations_close_with_1002(string violation)
    {
        var frame = violation switch
        {
            // Long enough that the server has the whole header (it reads the 4 mask bytes before judging it).
            "unmasked" => RawWebSocket.Frame(0x1, "hello, unmasked world"u8, masked: false),
            "rsv" => RawWebSocket.Frame(0x1, "hi"u8, rsv: 0b011),
            "opcode" => RawWebSocket.Frame(0x3, "hi"u8),
            _ => RawWebSocket.Frame(0x9, "ping"u8, fin: false),
        };
        // The server sends 1002 and drops the connection at once; the reset can overtake the close frame in the
        // client's kernel, so "ended without a readable close" (null) is the same verdict. A timeout would throw.
        var code = await SendFramesAndReadCloseAsync(frame);
        Assert.True(code is 1002 or null, $"closed with {code}");
        await StillServesAsync();
    }

    [Fact]
    public async Task Garbage_instead_of_an_http_request_is_refused()
    {
        using var raw = await RawWebSocket.OpenAsync(Gw.BaseUri);
        await raw.WriteAsync(Encoding.ASCII.GetBytes("\x16\x03\x01 this is not HTTP at all \r\n\r\n"));
        var head = await raw.ReadHeadAsync();
        Assert.True(head.Length == 0 || head.StartsWith("HTTP/1.1 400", StringComparison.Ordinal), head);
        await StillServesAsync();
    }

    [Fact]
    public async Task Thousands_of_headers_or_a_huge_subprotocol_header_are_refused()
    {
        foreach (var extra in new[]
                 {
                     string.Concat(Enumerable.Range(0, 2000).Select(i => $"X-H{i}: v\r\n")),
                     "Sec-WebSocket-Protocol: " + new string('p', 100_000) + "\r\n",
                 })
        {
            using var raw = await RawWebSocket.OpenAsync(Gw.BaseUri);
            var request = $"GET /ws/echo HTTP/1.1\r\nHost: {Gw.BaseUri.Authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
                          $"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n";
            try
            {
                await raw.WriteAsync(Encoding.ASCII.GetBytes(request));
            }
            catch (IOException)
            {
            }
            var head = await raw.ReadHeadAsync();
            Assert.StartsWith("HTTP/1.1 431", head);
        }
        await StillServesAsync();
    }

    [Fact]
    public async Task A_slow_drip_upgrade_is_dropped_while_devices_still_connect()
    {
        using var slow = await RawWebSocket.OpenAsync(Gw.BaseUri);
        await slow.WriteAsync("GET /ws/echo HTTP/1.1\r\nHost: x\r\n"u8.ToArray());
        var dropped = Task.Run(async () =>
        {
            try
            {
                for (var i = 0; i < 100; i++)
                {
                    await slow.WriteAsync(Encoding.ASCII.GetBytes($"X-Drip-{i}: 1\r\n"));
                    await Task.Delay(200);
                }
                return false;
            }
            catch (IOException)
            {
                return true;
            }
        });
        await StillServesAsync();
        // Kestrel's RequestHeadersTimeout (2 s here) ends it long before its 100 headers are dripped in.
        var head = await slow.ReadHeadAsync();
        Assert.True(head.Length == 0 || head.StartsWith("HTTP/1.1 408", StringComparison.Ordinal), head);
        await dropped.WaitAsync(Timeouts.Default);
    }

    [Fact]
    public async Task Huge_numbers_in_envelopes_are_refused_or_carried_without_harm()
    {
        using var device = await Gw.ConnectEnvelopeAsync("numbers");
        await device.SendTextAsync("{\"type\":\"send\",\"to\":\"x\",\"data\":1,\"ttl\":1e999,\"ref\":\"t\"}");
        Assert.Equal("invalid_field", (await device.ReceiveJsonAsync()).Str("code"));
        await device.SendTextAsync("{\"type\":\"send\",\"to\":\"server\",\"data\":123456789012345678901234567890e400000,\"ref\":\"big\"}");
        Assert.Equal("sent", (await device.ReceiveJsonAsync()).Str("type"));
        await StillServesAsync();
    }

    [Fact]
    public async Task Connect_disconnect_cycles_leave_no_presence_behind_and_memory_bounded()
    {
        async Task CycleAsync(int from, int count)
        {
            for (var i = from; i < from + count; i += 20)
            {
                await Task.WhenAll(Enumerable.Range(i, 20).Select(async n =>
                {
                    using var d = await Gw.ConnectAsync($"churn-{n % 50}");
                    await d.CloseCleanlyAsync();
                }));
            }
        }
        await CycleAsync(0, 200);
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var before = GC.GetTotalMemory(forceFullCollection: true);
        await CycleAsync(200, 2000);
        var list = await Gw.Api.GetJsonAsync("api/devices");
        Assert.DoesNotContain(list.GetProperty("devices").EnumerateArray(), d => d.Str("id").StartsWith("churn-", StringComparison.Ordinal));
        GC.Collect();
        GC.WaitForPendingFinalizers();
        var after = GC.GetTotalMemory(forceFullCollection: true);
        Assert.True(after - before < 32 * 1024 * 1024, $"managed heap grew by {(after - before) / 1024} KiB over 2,000 cycles");
        await StillServesAsync();
    }
}
