using System.Net;
using System.Net.WebSockets;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

public sealed class EchoTests
{
    private static async Task<ClientWebSocket> ConnectEchoAsync(TestGateway gw)
    {
        var socket = new ClientWebSocket();
        await socket.ConnectAsync(gw.WsUri("ws/echo"), new CancellationTokenSource(Timeouts.Default).Token);
        return socket;
    }

    [Fact]
    public async Task Echo_returns_each_message_with_its_type_and_needs_no_id_or_token()
    {
        await using var gw = await TestGateway.StartAsync();
        using var socket = await ConnectEchoAsync(gw);
        await socket.SendTextAsync("hello");
        Assert.Equal("hello", await socket.ReceiveTextAsync());
        byte[] binary = [0, 255, 128, 7];
        await socket.SendAsync(binary, WebSocketMessageType.Binary, true, default);
        var back = await socket.ReceiveMessageAsync();
        Assert.Equal(WebSocketMessageType.Binary, back.Type);
        Assert.Equal(binary, back.Data);
        await socket.SendAsync(Array.Empty<byte>(), WebSocketMessageType.Text, true, default);
        var empty = await socket.ReceiveMessageAsync();
        Assert.Equal(WebSocketMessageType.Text, empty.Type);
        Assert.Empty(empty.Data);
        // A message sent in several frames comes back as one.
        await socket.SendAsync("par"u8.ToArray(), WebSocketMessageType.Text, false, default);
        await socket.SendAsync("ts"u8.ToArray(), WebSocketMessageType.Text, true, default);
        Assert.Equal("parts", await socket.ReceiveTextAsync());
        await socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", new CancellationTokenSource(Timeouts.Default).Token);
        Assert.Equal(WebSocketCloseStatus.NormalClosure, socket.CloseStatus);
    }

    [Fact]
    public async Task Echo_enforces_the_size_limit_with_1009()
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string> { ["DeviceGate:Limits:MaxMessageBytes"] = "1000" });
        using var socket = await ConnectEchoAsync(gw);
        await socket.SendAsync(new byte[1000], WebSocketMessageType.Binary, true, default);
        Assert.Equal(1000, (await socket.ReceiveMessageAsync()).Data.Length);
        await socket.SendAsync(new byte[1001], WebSocketMessageType.Binary, true, default);
        Assert.Equal((1009, "too_big"), await socket.ReceiveCloseAsync());
    }

    [Fact]
    public async Task Echo_can_be_turned_off()
    {
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string> { ["DeviceGate:WebSockets:EnableEcho"] = "false" });
        using var plain = new HttpClient { BaseAddress = gw.BaseUri };
        Assert.Equal(HttpStatusCode.NotFound, (await plain.GetAsync("ws/echo")).StatusCode);
    }

    [Fact]
    public async Task Echo_is_paced_by_its_replies_not_held_to_the_device_message_rate()
    {
        // Default limits: 200 messages/s with a burst of 400 per device. An echo client doing 1,000 back-to-back round
        // trips is never held: none of its messages waited for a token.
        await using var gw = await TestGateway.StartAsync();
        using var socket = await ConnectEchoAsync(gw);
        for (var i = 0; i < 1000; i++)
        {
            await socket.SendTextAsync($"m{i}");
            Assert.Equal($"m{i}", await socket.ReceiveTextAsync());
        }
        using var anonymous = new HttpClient { BaseAddress = gw.BaseUri };
        var metrics = await anonymous.GetStringAsync("metrics");
        Assert.Equal(0, PrometheusText.Value(metrics, "devicegate_rate_limited_messages_total"));
    }
}
