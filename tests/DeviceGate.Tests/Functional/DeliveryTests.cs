using System.Net;
using System.Net.WebSockets;
using System.Text;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

public sealed class DeliveryTests : GatewayTest
{
    [Fact]
    public async Task Text_arrives_as_text_with_the_exact_bytes()
    {
        using var device = await Gw.ConnectAsync("t1");
        using var response = await Gw.Api.PostTextAsync("api/devices/t1/messages", "héllo \u2603 {\"a\":1}");
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var body = await response.JsonAsync();
        Assert.Equal("sent", body.GetProperty("status").GetString());
        Assert.True(Guid.TryParse(body.GetProperty("id").GetString(), out _));
        var m = await device.ReceiveMessageAsync();
        Assert.Equal(WebSocketMessageType.Text, m.Type);
        Assert.Equal(Encoding.UTF8.GetBytes("héllo \u2603 {\"a\":1}"), m.Data);
    }

    [Fact]
    public async Task Binary_arrives_as_binary_with_non_utf8_bytes_intact()
    {
        using var device = await Gw.ConnectAsync("b1");
        byte[] payload = [0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0x01];
        Assert.Equal(HttpStatusCode.Accepted, (await Gw.Api.PostBytesAsync("api/devices/b1/messages", payload)).StatusCode);
        var m = await device.ReceiveMessageAsync();
        Assert.Equal(WebSocketMessageType.Binary, m.Type);
        Assert.Equal(payload, m.Data);
    }

    [Fact]
    public async Task Content_type_is_matched_case_insensitively_ignoring_parameters()
    {
        using var device = await Gw.ConnectAsync("b2");
        Assert.Equal(HttpStatusCode.Accepted, (await Gw.Api.PostBytesAsync("api/devices/b2/messages", [1, 2], "Application/Octet-Stream; foo=bar")).StatusCode);
        Assert.Equal(WebSocketMessageType.Binary, (await device.ReceiveMessageAsync()).Type);
        Assert.Equal(HttpStatusCode.Accepted, (await Gw.Api.PostBytesAsync("api/devices/b2/messages", "{}"u8.ToArray(), "application/json")).StatusCode);
        var text = await device.ReceiveMessageAsync();
        Assert.Equal(WebSocketMessageType.Text, text.Type);
        Assert.Equal("{}", text.Text);
    }

    [Fact]
    public async Task A_60_KiB_payload_arrives_whole()
    {
        using var device = await Gw.ConnectAsync("big");
        var payload = new byte[60 * 1024];
        new Random(7).NextBytes(payload);
        Assert.Equal(HttpStatusCode.Accepted, (await Gw.Api.PostBytesAsync("api/devices/big/messages", payload)).StatusCode);
        Assert.Equal(payload, (await device.ReceiveMessageAsync()).Data);
    }

    [Fact]
    public async Task An_empty_payload_is_a_message()
    {
        using var device = await Gw.ConnectAsync("e1");
        Assert.Equal(HttpStatusCode.Accepted, (await Gw.Api.PostTextAsync("api/devices/e1/messages", "")).StatusCode);
        Assert.Equal(HttpStatusCode.Accepted, (await Gw.Api.PostTextAsync("api/devices/e1/messages", "after")).StatusCode);
        var first = await device.ReceiveMessageAsync();
        Assert.Equal(WebSocketMessageType.Text, first.Type);
        Assert.Empty(first.Data);
        Assert.Equal("after", await device.ReceiveTextAsync());
    }

    [Fact]
    public async Task Messages_to_one_device_arrive_in_order()
    {
        using var device = await Gw.ConnectAsync("o1");
        for (var i = 0; i < 50; i++) Assert.Equal(HttpStatusCode.Accepted, (await Gw.Api.PostTextAsync("api/devices/o1/messages", $"m{i}")).StatusCode);
        for (var i = 0; i < 50; i++) Assert.Equal($"m{i}", await device.ReceiveTextAsync());
    }

    [Fact]
    public async Task Sending_to_an_offline_device_is_404_and_bad_bodies_are_refused()
    {
        Assert.Equal(HttpStatusCode.NotFound, (await Gw.Api.PostTextAsync("api/devices/nobody/messages", "x")).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await Gw.Api.PostTextAsync("api/devices/bad%20id/messages", "x")).StatusCode);
        using var device = await Gw.ConnectAsync("v1");
        Assert.Equal(HttpStatusCode.BadRequest, (await Gw.Api.PostBytesAsync("api/devices/v1/messages", [0xff, 0xfe], "text/plain")).StatusCode);
        using var tooBig = await Gw.Api.PostBytesAsync("api/devices/v1/messages", new byte[65537]);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, tooBig.StatusCode);
        Assert.Equal("application/problem+json", tooBig.Content.Headers.ContentType?.MediaType);
        // Exactly the limit is fine, and the device got nothing from the refused calls.
        Assert.Equal(HttpStatusCode.Accepted, (await Gw.Api.PostBytesAsync("api/devices/v1/messages", new byte[65536])).StatusCode);
        Assert.Equal(65536, (await device.ReceiveMessageAsync()).Data.Length);
    }

    [Fact]
    public async Task Each_of_100_devices_gets_exactly_its_own_message()
    {
        var devices = await Task.WhenAll(Enumerable.Range(0, 100).Select(i => Gw.ConnectAsync($"iso-{i}")));
        await Task.WhenAll(Enumerable.Range(0, 100).Select(async i =>
            Assert.Equal(HttpStatusCode.Accepted, (await Gw.Api.PostTextAsync($"api/devices/iso-{i}/messages", $"for iso-{i}")).StatusCode)));
        await Task.WhenAll(Enumerable.Range(0, 100).Select(async i => Assert.Equal($"for iso-{i}", await devices[i].ReceiveTextAsync())));
        // Nothing else is pending: a marker sent now is the very next message each device sees.
        using var marker = await Gw.Api.PostTextAsync("api/broadcast", "marker");
        await Task.WhenAll(devices.Select(async d => Assert.Equal("marker", await d.ReceiveTextAsync())));
        foreach (var d in devices) d.Dispose();
    }

    [Fact]
    public async Task Broadcast_reaches_every_connected_device_and_counts_them()
    {
        var devices = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => Gw.ConnectAsync($"all-{i}")));
        using var response = await Gw.Api.PostBytesAsync("api/broadcast", [9, 8, 7]);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(20, (await response.JsonAsync()).GetProperty("recipients").GetInt32());
        foreach (var d in devices)
        {
            var m = await d.ReceiveMessageAsync();
            Assert.Equal(WebSocketMessageType.Binary, m.Type);
            Assert.Equal([9, 8, 7], m.Data);
            d.Dispose();
        }
    }
}
