using System.Net;
using System.Net.Http.Headers;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

/// <summary>
/// Desired state delivered to envelope devices through the outbox (issue 15): the state message, its ack moving
/// ackedVersion, latest wins (superseded), redelivery, catch-up on connect, and raw devices left out.
/// </summary>
public sealed class StateDeliveryTests : GatewayTest
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["DeviceGate:Delivery:AckTimeout"] = "00:00:01",
    };

    private async Task<HttpResponseMessage> PatchAsync(string device, string part, string patch)
    {
        using var request = new HttpRequestMessage(HttpMethod.Patch, $"api/devices/{device}/state/{part}") { Content = new StringContent(patch, Encoding.UTF8) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/merge-patch+json");
        var response = await Gw.Api.SendAsync(request);
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return response;
    }

    /// <summary>PATCH desired; returns the new document and the id of the state message it made.</summary>
    private async Task<(JsonElement Document, string MessageId)> PatchDesiredAsync(string device, string patch)
    {
        using var response = await PatchAsync(device, "desired", patch);
        return (await response.JsonAsync(), response.Headers.GetValues("DeviceGate-Message-Id").Single());
    }

    private async Task<string> StatusAsync(string id) => (await Gw.Api.GetJsonAsync($"api/messages/{id}")).Str("status");

    private async Task<JsonElement> StateAsync(string device) => await Gw.Api.GetJsonAsync($"api/devices/{device}/state");

    private static async Task<JsonElement> ReceiveStateAsync(WebSocket device, TimeSpan? timeout = null)
    {
        var m = await device.ReceiveJsonAsync(timeout);
        Assert.Equal("state", m.Str("type"));
        return m;
    }

    [Fact]
    public async Task An_online_envelope_device_receives_desired_state_and_its_ack_moves_acked_version()
    {
        using var device = await Gw.ConnectEnvelopeAsync("st-online");
        await PatchAsync("st-online", "reported", """{"fw":"1.3"}""");
        var (_, id) = await PatchDesiredAsync("st-online", """{"fw":"1.4","brightness":70}""");
        var m = await ReceiveStateAsync(device);
        Assert.Equal((id, 1), (m.Str("id"), m.GetProperty("version").GetInt32()));
        Assert.Equal("""{"fw":"1.4","brightness":70}""", m.GetProperty("desired").GetRawText());
        Assert.Equal("""{"fw":"1.4","brightness":70}""", m.GetProperty("delta").GetRawText());
        Assert.Equal(0, (await StateAsync("st-online")).GetProperty("ackedVersion").GetInt32());

        await using var acked = await SseClient.OpenAsync(Gw.Api, "api/events?types=acked");
        await device.SendJsonAsync(new { type = "ack", id });
        Assert.Equal(id, (await acked.NextAsync()).Data.Str("id"));
        await ApiExtensions.EventuallyAsync(async () => (await StateAsync("st-online")).GetProperty("ackedVersion").GetInt32() == 1, "ackedVersion 1");
        await ApiExtensions.EventuallyAsync(async () => await StatusAsync(id) == "acked", "state message acked");
    }

    [Fact]
    public async Task Three_patches_while_offline_arrive_as_one_state_message_with_the_latest_version()
    {
        var ids = new List<string>();
        foreach (var patch in new[] { """{"a":1}""", """{"b":2}""", """{"a":3}""" }) ids.Add((await PatchDesiredAsync("st-offline", patch)).MessageId);
        Assert.Equal(["superseded", "superseded", "queued"], [await StatusAsync(ids[0]), await StatusAsync(ids[1]), await StatusAsync(ids[2])]);
        Assert.Equal(1, (await Gw.Api.GetJsonAsync("api/devices/st-offline")).GetProperty("queued").GetInt32());

        using var device = await Gw.ConnectEnvelopeAsync("st-offline");
        var m = await ReceiveStateAsync(device);
        Assert.Equal((ids[2], 3), (m.Str("id"), m.GetProperty("version").GetInt32()));
        Assert.Equal("""{"a":3,"b":2}""", m.GetProperty("desired").GetRawText());
        // Nothing else was queued: the next thing the device gets is what is sent now.
        await Gw.Api.PostTextAsync("api/devices/st-offline/messages", "marker");
        Assert.Equal("marker", (await device.ReceiveJsonAsync()).Str("data"));
        var history = (await Gw.Api.GetJsonAsync($"api/messages/{ids[0]}")).GetProperty("history").EnumerateArray().Select(h => h.Str("status")).ToArray();
        Assert.Equal(["queued", "superseded"], history);
    }

    [Fact]
    public async Task An_unacked_state_message_is_redelivered_and_a_newer_version_replaces_it()
    {
        using var device = await Gw.ConnectEnvelopeAsync("st-redo");
        var (_, first) = await PatchDesiredAsync("st-redo", """{"mode":"day"}""");
        Assert.Equal(first, (await ReceiveStateAsync(device)).Str("id"));
        // Not acked: the same message again after the ack timeout.
        Assert.Equal(first, (await ReceiveStateAsync(device, TimeSpan.FromSeconds(10))).Str("id"));

        var (_, second) = await PatchDesiredAsync("st-redo", """{"mode":"night"}""");
        var newer = await ReceiveStateAsync(device);
        Assert.Equal((second, 2), (newer.Str("id"), newer.GetProperty("version").GetInt32()));
        Assert.Equal("superseded", await StatusAsync(first));
        // Only the newer one is redelivered from now on.
        Assert.Equal(second, (await ReceiveStateAsync(device, TimeSpan.FromSeconds(10))).Str("id"));
        await device.SendJsonAsync(new { type = "ack", id = second });
        await ApiExtensions.EventuallyAsync(async () => (await StateAsync("st-redo")).GetProperty("ackedVersion").GetInt32() == 2, "ackedVersion 2");
        // An ack of the superseded one changes nothing.
        await device.SendJsonAsync(new { type = "ack", id = first });
        await Gw.Api.PostTextAsync("api/devices/st-redo/messages", "after");
        Assert.Equal("after", (await device.ReceiveJsonAsync()).Str("data"));
        Assert.Equal("superseded", await StatusAsync(first));
    }

    [Fact]
    public async Task A_device_that_reconnects_without_acking_gets_the_state_again()
    {
        var (_, id) = await PatchDesiredAsync("st-again", """{"x":1}""");
        using (var first = await Gw.ConnectEnvelopeAsync("st-again"))
        {
            Assert.Equal(id, (await ReceiveStateAsync(first)).Str("id"));
            await first.CloseCleanlyAsync();
        }
        using var second = await Gw.ConnectEnvelopeAsync("st-again");
        Assert.Equal(id, (await ReceiveStateAsync(second)).Str("id"));
    }

    [Fact]
    public async Task A_device_owed_a_version_with_no_message_pending_gets_a_new_one_on_connect()
    {
        var (_, id) = await PatchDesiredAsync("st-owed", """{"x":1}""");
        using (var cancel = await Gw.Api.DeleteAsync($"api/messages/{id}")) Assert.True(cancel.IsSuccessStatusCode, $"{(int)cancel.StatusCode}");
        Assert.Equal("cancelled", await StatusAsync(id));

        using var device = await Gw.ConnectEnvelopeAsync("st-owed");
        var m = await ReceiveStateAsync(device);
        Assert.NotEqual(id, m.Str("id"));
        Assert.Equal(1, m.GetProperty("version").GetInt32());
        await device.SendJsonAsync(new { type = "ack", id = m.Str("id") });
        await ApiExtensions.EventuallyAsync(async () => (await StateAsync("st-owed")).GetProperty("ackedVersion").GetInt32() == 1, "acked");
        await device.CloseCleanlyAsync();

        // Acked: the next connection is not given it again.
        using var again = await Gw.ConnectEnvelopeAsync("st-owed");
        await Gw.Api.PostTextAsync("api/devices/st-owed/messages", "only this");
        Assert.Equal("only this", (await again.ReceiveJsonAsync()).Str("data"));
    }

    [Fact]
    public async Task Raw_devices_do_not_receive_state_messages()
    {
        using var raw = await Gw.ConnectAsync("st-raw");
        var (_, id) = await PatchDesiredAsync("st-raw", """{"x":1}""");
        await Gw.Api.PostTextAsync("api/devices/st-raw/messages", "plain");
        Assert.Equal("plain", await raw.ReceiveTextAsync());
        Assert.Equal("queued", await StatusAsync(id));
        await raw.CloseCleanlyAsync();

        // The same device in envelope mode later gets it.
        using var device = await Gw.ConnectEnvelopeAsync("st-raw");
        Assert.Equal(id, (await ReceiveStateAsync(device)).Str("id"));
    }

    [Fact]
    public async Task State_messages_share_the_lane_in_acceptance_order()
    {
        await Gw.Api.PostTextAsync("api/devices/st-order/messages?ttl=60", "before");
        var (_, id) = await PatchDesiredAsync("st-order", """{"x":1}""");
        await Gw.Api.PostTextAsync("api/devices/st-order/messages?ttl=60", "after");
        using var device = await Gw.ConnectEnvelopeAsync("st-order");
        Assert.Equal("before", (await device.ReceiveJsonAsync()).Str("data"));
        Assert.Equal(id, (await ReceiveStateAsync(device)).Str("id"));
        Assert.Equal("after", (await device.ReceiveJsonAsync()).Str("data"));
    }

    [Fact]
    public async Task The_walk_through_patch_offline_connect_report_and_the_delta_goes_empty()
    {
        await PatchDesiredAsync("kiosk-7", """{"fw":"1.4","screen":{"brightness":70}}""");
        using var device = await Gw.ConnectEnvelopeAsync("kiosk-7");
        var m = await ReceiveStateAsync(device);
        await device.SendJsonAsync(new { type = "ack", id = m.Str("id") });
        await device.SendTextAsync("""{"type":"report","state":{"fw":"1.4","screen":{"brightness":70}},"ref":"r1"}""");
        var reported = await device.ReceiveJsonAsync();
        Assert.Equal(("reported", 1, "r1"), (reported.Str("type"), reported.GetProperty("version").GetInt32(), reported.Str("ref")));
        await ApiExtensions.EventuallyAsync(async () =>
        {
            var doc = await StateAsync("kiosk-7");
            return doc.GetProperty("delta").GetRawText() == "{}" && doc.GetProperty("ackedVersion").GetInt32() == 1;
        }, "delta empty and version 1 acked");
    }
}
