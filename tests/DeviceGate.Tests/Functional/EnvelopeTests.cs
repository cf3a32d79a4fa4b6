using System.Net;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

public sealed class EnvelopeTests : GatewayTest
{
    [Fact]
    public async Task Device_to_device_send_is_confirmed_with_the_ref_and_carries_the_sender()
    {
        using var a = await Gw.ConnectEnvelopeAsync("env-a");
        using var b = await Gw.ConnectEnvelopeAsync("env-b");
        await a.SendJsonAsync(new { type = "send", to = "env-b", data = new { temp = 21.5, tags = new[] { "x" } }, @ref = "r-1", from = "spoofed" });
        var sent = await a.ReceiveJsonAsync();
        Assert.Equal("sent", sent.Str("type"));
        Assert.Equal("r-1", sent.Str("ref"));
        Assert.Equal("sent", sent.Str("status"));
        var message = await b.ReceiveJsonAsync();
        Assert.Equal("message", message.Str("type"));
        Assert.Equal("env-a", message.Str("from"));
        Assert.Equal(sent.Str("id"), message.Str("id"));
        Assert.Equal(21.5, message.GetProperty("data").GetProperty("temp").GetDouble());
        Assert.False(message.TryGetProperty("group", out _));
        Assert.False(message.TryGetProperty("ref", out _));
    }

    [Fact]
    public async Task A_send_without_ref_gets_no_confirmation()
    {
        using var a = await Gw.ConnectEnvelopeAsync("nr-a");
        using var b = await Gw.ConnectEnvelopeAsync("nr-b");
        await a.SendJsonAsync(new { type = "send", to = "nr-b", data = 1 });
        Assert.Equal(1, (await b.ReceiveJsonAsync()).GetProperty("data").GetInt32());
        // The next thing a sees is the answer to this bad envelope, not a 'sent' for the first one.
        await a.SendJsonAsync(new { type = "nope", @ref = "probe" });
        Assert.Equal("unknown_type", (await a.ReceiveJsonAsync()).Str("code"));
    }

    [Fact]
    public async Task Raw_targets_get_the_string_itself_or_the_json_text()
    {
        using var a = await Gw.ConnectEnvelopeAsync("to-raw-a");
        using var raw = await Gw.ConnectAsync("raw-target");
        await a.SendJsonAsync(new { type = "send", to = "raw-target", data = "plain words" });
        Assert.Equal("plain words", await raw.ReceiveTextAsync());
        await a.SendJsonAsync(new { type = "send", to = "raw-target", data = new { on = true } });
        Assert.Equal("{\"on\":true}", await raw.ReceiveTextAsync());
    }

    [Fact]
    public async Task Publish_reaches_other_members_only()
    {
        using var a = await Gw.ConnectEnvelopeAsync("pub-a");
        using var b = await Gw.ConnectEnvelopeAsync("pub-b");
        using var raw = await Gw.ConnectAsync("pub-raw");
        using var outsider = await Gw.ConnectEnvelopeAsync("pub-out");
        await a.SendJsonAsync(new { type = "join", group = "room" });
        await b.SendJsonAsync(new { type = "join", group = "room" });
        await Gw.Api.PutAsync("api/groups/room/devices/pub-raw", null);
        // Joins are processed in order with later messages of the same connection, so after b's join is confirmed
        // by a probe answer, both memberships exist.
        await b.SendJsonAsync(new { type = "nope" });
        Assert.Equal("unknown_type", (await b.ReceiveJsonAsync()).Str("code"));
        await a.SendJsonAsync(new { type = "nope" });
        Assert.Equal("unknown_type", (await a.ReceiveJsonAsync()).Str("code"));

        await a.SendJsonAsync(new { type = "publish", group = "room", data = "hi all", @ref = "p1" });
        var sent = await a.ReceiveJsonAsync();
        Assert.Equal(("sent", "p1"), (sent.Str("type"), sent.Str("ref")));
        var atB = await b.ReceiveJsonAsync();
        Assert.Equal(("message", "pub-a", "room", "hi all"), (atB.Str("type"), atB.Str("from"), atB.Str("group"), atB.Str("data")));
        Assert.Equal("hi all", await raw.ReceiveTextAsync());

        // a did not get its own publish, and the outsider got nothing: the next thing each sees is this.
        await Gw.Api.PostTextAsync("api/devices/pub-a/messages", "next-a");
        Assert.Equal("next-a", (await a.ReceiveJsonAsync()).Str("data"));
        await Gw.Api.PostTextAsync("api/devices/pub-out/messages", "next-out");
        Assert.Equal("next-out", (await outsider.ReceiveJsonAsync()).Str("data"));

        await a.SendJsonAsync(new { type = "leave", group = "room" });
        await a.SendJsonAsync(new { type = "nope" });
        await a.ReceiveJsonAsync();
        Assert.Equal(["pub-b", "pub-raw"], (await Gw.Api.GetJsonAsync("api/groups/room")).GetProperty("devices").EnumerateArray().Select(d => d.GetString()!).ToArray());
    }

    [Fact]
    public async Task Token_claims_restrict_groups_and_targets_and_server_is_always_allowed()
    {
        using var limited = await Gw.ConnectEnvelopeAsync("lim", groups: ["sensors.*"], send: ["hub-1", "ops.*"]);
        using var hub = await Gw.ConnectEnvelopeAsync("hub-1");
        using var other = await Gw.ConnectEnvelopeAsync("other-1");

        await limited.SendJsonAsync(new { type = "join", group = "admin", @ref = "j1" });
        var denied = await limited.ReceiveJsonAsync();
        Assert.Equal(("error", "forbidden", "j1"), (denied.Str("type"), denied.Str("code"), denied.Str("ref")));
        await limited.SendJsonAsync(new { type = "publish", group = "admin", data = 1, @ref = "p1" });
        Assert.Equal("forbidden", (await limited.ReceiveJsonAsync()).Str("code"));
        await limited.SendJsonAsync(new { type = "join", group = "sensors.kitchen" });
        await limited.SendJsonAsync(new { type = "send", to = "other-1", data = 1, @ref = "s1" });
        Assert.Equal("forbidden", (await limited.ReceiveJsonAsync()).Str("code"));
        await limited.SendJsonAsync(new { type = "send", to = "hub-1", data = 2, @ref = "s2" });
        Assert.Equal("sent", (await limited.ReceiveJsonAsync()).Str("type"));
        Assert.Equal(2, (await hub.ReceiveJsonAsync()).GetProperty("data").GetInt32());
        await limited.SendJsonAsync(new { type = "send", to = "server", data = 3, @ref = "s3" });
        Assert.Equal("sent", (await limited.ReceiveJsonAsync()).Str("type"));
        Assert.Equal(["lim"], (await Gw.Api.GetJsonAsync("api/groups/sensors.kitchen")).GetProperty("devices").EnumerateArray().Select(d => d.GetString()!).ToArray());
        Assert.Empty((await Gw.Api.GetJsonAsync("api/groups/admin")).GetProperty("devices").EnumerateArray());
    }

    [Theory]
    [InlineData("{not json", "bad_json", null)]
    [InlineData("[1,2]", "bad_json", null)]
    [InlineData("{\"ref\":\"r\"}", "missing_field", "r")]
    [InlineData("{\"type\":\"dance\",\"ref\":\"r\"}", "unknown_type", "r")]
    [InlineData("{\"type\":\"send\",\"data\":1,\"ref\":\"r\"}", "missing_field", "r")]
    [InlineData("{\"type\":\"send\",\"to\":\"x\",\"ref\":\"r\"}", "missing_field", "r")]
    [InlineData("{\"type\":\"send\",\"to\":\"bad id\",\"data\":1,\"ref\":\"r\"}", "invalid_field", "r")]
    [InlineData("{\"type\":\"send\",\"to\":5,\"data\":1,\"ref\":\"r\"}", "invalid_field", "r")]
    [InlineData("{\"type\":\"send\",\"to\":\"x\",\"data\":1,\"ref\":\"01234567890123456789012345678901234567890123456789012345678901234\"}", "invalid_field", null)]
    [InlineData("{\"type\":\"send\",\"to\":\"nobody-home\",\"data\":1,\"ref\":\"r\"}", "offline", "r")]
    [InlineData("{\"type\":\"join\",\"ref\":\"r\"}", "missing_field", "r")]
    [InlineData("{\"type\":\"publish\",\"group\":\".x\",\"data\":1,\"ref\":\"r\"}", "invalid_field", "r")]
    [InlineData("{\"type\":\"reply\",\"data\":1,\"ref\":\"r\"}", "missing_field", "r")]
    public async Task Each_error_has_a_stable_code_and_the_connection_stays_usable(string envelope, string code, string? @ref)
    {
        using var device = await Gw.ConnectEnvelopeAsync("err");
        await device.SendTextAsync(envelope);
        var error = await device.ReceiveJsonAsync();
        Assert.Equal("error", error.Str("type"));
        Assert.Equal(code, error.Str("code"));
        Assert.False(string.IsNullOrWhiteSpace(error.Str("message")));
        if (@ref is null) Assert.False(error.TryGetProperty("ref", out _));
        else Assert.Equal(@ref, error.Str("ref"));
        await device.SendJsonAsync(new { type = "send", to = "server", data = "still here", @ref = "ok" });
        Assert.Equal("sent", (await device.ReceiveJsonAsync()).Str("type"));
    }

    [Fact]
    public async Task A_binary_frame_is_answered_with_binary_not_supported()
    {
        using var device = await Gw.ConnectEnvelopeAsync("bin");
        await device.SendAsync(new byte[] { 1, 2, 3 }, WebSocketMessageType.Binary, true, default);
        Assert.Equal("binary_not_supported", (await device.ReceiveJsonAsync()).Str("code"));
        Assert.Equal(WebSocketState.Open, device.State);
    }

    [Fact]
    public async Task Deeply_nested_json_is_bad_json_not_a_crash()
    {
        using var device = await Gw.ConnectEnvelopeAsync("deep");
        var deep = new string('[', 5000) + new string(']', 5000);
        await device.SendTextAsync($"{{\"type\":\"send\",\"to\":\"server\",\"data\":{deep}}}");
        Assert.Equal("bad_json", (await device.ReceiveJsonAsync()).Str("code"));
    }

    [Fact]
    public async Task Repeated_abuse_closes_with_1008_policy()
    {
        using var device = await Gw.ConnectEnvelopeAsync("abuser");
        using var bystander = await Gw.ConnectEnvelopeAsync("calm");
        var send = Task.Run(async () =>
        {
            try
            {
                for (var i = 0; i < 500 && device.State == WebSocketState.Open; i++) await device.SendTextAsync("garbage");
            }
            catch (WebSocketException)
            {
            }
        });
        Assert.Equal((1008, "policy"), await device.ReceiveCloseAsync());
        await send;
        await Gw.Api.PostTextAsync("api/devices/calm/messages", "fine");
        Assert.Equal("fine", (await bystander.ReceiveJsonAsync()).Str("data"));
    }

    [Fact]
    public async Task Api_bodies_arrive_as_json_string_or_base64_by_content_type()
    {
        using var device = await Gw.ConnectEnvelopeAsync("api-env");
        Assert.Equal(HttpStatusCode.Accepted, (await Gw.Api.PostBytesAsync("api/devices/api-env/messages", "{\"a\":[1,2]}"u8.ToArray(), "application/json; charset=utf-8")).StatusCode);
        var json = await device.ReceiveJsonAsync();
        Assert.Equal(("message", "server"), (json.Str("type"), json.Str("from")));
        Assert.Equal(2, json.GetProperty("data").GetProperty("a")[1].GetInt32());

        await Gw.Api.PostTextAsync("api/devices/api-env/messages", "{\"a\":1}");
        Assert.Equal("{\"a\":1}", (await device.ReceiveJsonAsync()).Str("data"));

        byte[] bytes = [0, 1, 254, 255];
        await Gw.Api.PostBytesAsync("api/devices/api-env/messages", bytes);
        var binary = await device.ReceiveJsonAsync();
        Assert.Equal(bytes, Convert.FromBase64String(binary.Str("dataBase64")));
        Assert.False(binary.TryGetProperty("data", out _));

        Assert.Equal(HttpStatusCode.BadRequest, (await Gw.Api.PostBytesAsync("api/devices/api-env/messages", "{oops"u8.ToArray(), "application/json")).StatusCode);

        await Gw.Api.PutAsync("api/groups/fleet/devices/api-env", null);
        await Gw.Api.PostTextAsync("api/groups/fleet/messages", "group hello");
        var grouped = await device.ReceiveJsonAsync();
        Assert.Equal(("fleet", "group hello", "server"), (grouped.Str("group"), grouped.Str("data"), grouped.Str("from")));
    }
}
