using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

public sealed class DurableDeliveryTests : GatewayTest
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["DeviceGate:Delivery:AckTimeout"] = "00:00:01",
        ["DeviceGate:Delivery:MaxInFlight"] = "4",
        ["DeviceGate:Delivery:MaxQueuedPerDevice"] = "20",
        ["DeviceGate:Delivery:MaxTtl"] = "01:00:00",
    };

    private async Task<JsonElement> SendAsync(string device, string text, string query = "?ttl=60", string? key = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"api/devices/{device}/messages{query}") { Content = new StringContent(text) };
        if (key is not null) request.Headers.Add("Idempotency-Key", key);
        using var response = await Gw.Api.SendAsync(request);
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return await response.JsonAsync();
    }

    private async Task<JsonElement> StatusAsync(string id) => await Gw.Api.GetJsonAsync($"api/messages/{id}");

    private static Task AckAsync(WebSocket device, string id) => device.SendJsonAsync(new { type = "ack", id });

    [Fact]
    public async Task Messages_for_an_offline_device_are_queued_and_delivered_in_order_on_connect()
    {
        var ids = new List<string>();
        for (var i = 0; i < 10; i++)
        {
            var r = await SendAsync("later", $"m{i}");
            Assert.Equal("queued", r.Str("status"));
            ids.Add(r.Str("id"));
        }
        var device = await Gw.Api.GetJsonAsync("api/devices/later");
        Assert.False(device.GetProperty("online").GetBoolean());
        Assert.Equal(10, device.GetProperty("queued").GetInt32());

        using var raw = await Gw.ConnectAsync("later");
        for (var i = 0; i < 10; i++) Assert.Equal($"m{i}", await raw.ReceiveTextAsync());
        // A message sent now comes after the backlog.
        Assert.Equal("sent", (await SendAsync("later", "m10")).Str("status"));
        Assert.Equal("m10", await raw.ReceiveTextAsync());
        await ApiExtensions.EventuallyAsync(async () => (await StatusAsync(ids[9])).Str("status") == "sent", "raw delivery recorded as sent");
        await ApiExtensions.EventuallyAsync(async () => (await Gw.Api.GetJsonAsync("api/devices/later")).GetProperty("queued").GetInt32() == 0, "outbox empty");
    }

    [Fact]
    public async Task An_envelope_ack_makes_the_status_acked_with_its_history()
    {
        var id = (await SendAsync("acker", "{\"x\":1}")).Str("id");
        using var device = await Gw.ConnectEnvelopeAsync("acker");
        var m = await device.ReceiveJsonAsync();
        Assert.Equal(id, m.Str("id"));
        await ApiExtensions.EventuallyAsync(async () => (await StatusAsync(id)).Str("status") == "sent", "sent recorded");
        await AckAsync(device, id);
        await ApiExtensions.EventuallyAsync(async () => (await StatusAsync(id)).Str("status") == "acked", "ack recorded");
        var status = await StatusAsync(id);
        Assert.Equal("acker", status.Str("device"));
        Assert.Equal(1, status.GetProperty("attempts").GetInt32());
        Assert.Equal(["queued", "sent", "acked"], status.GetProperty("history").EnumerateArray().Select(h => h.Str("status")).ToArray());
        Assert.Equal(0, (await Gw.Api.GetJsonAsync("api/devices/acker")).GetProperty("queued").GetInt32());
    }

    [Fact]
    public async Task Unacked_messages_are_redelivered_with_the_same_id_after_reconnect()
    {
        var id = (await SendAsync("forgetful", "important")).Str("id");
        using (var first = await Gw.ConnectEnvelopeAsync("forgetful"))
        {
            Assert.Equal(id, (await first.ReceiveJsonAsync()).Str("id"));
            await first.CloseCleanlyAsync();
        }
        using var second = await Gw.ConnectEnvelopeAsync("forgetful");
        var again = await second.ReceiveJsonAsync();
        Assert.Equal((id, "important"), (again.Str("id"), again.Str("data")));
        await AckAsync(second, id);
        await ApiExtensions.EventuallyAsync(async () => (await StatusAsync(id)).Str("status") == "acked", "acked");
    }

    [Fact]
    public async Task An_unacked_message_is_sent_again_after_the_ack_timeout()
    {
        using var device = await Gw.ConnectEnvelopeAsync("slowpoke");
        var id = (await SendAsync("slowpoke", "ping")).Str("id");
        Assert.Equal(id, (await device.ReceiveJsonAsync()).Str("id"));
        var redelivered = await device.ReceiveJsonAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(id, redelivered.Str("id"));
        await AckAsync(device, id);
        await ApiExtensions.EventuallyAsync(async () => (await StatusAsync(id)).Str("status") == "acked", "acked");
        Assert.True((await StatusAsync(id)).GetProperty("attempts").GetInt32() >= 2);
    }

    [Fact]
    public async Task At_most_max_in_flight_unacked_messages_are_outstanding()
    {
        for (var i = 0; i < 6; i++) await SendAsync("capped", $"c{i}", "?ttl=600");
        using var device = await Gw.ConnectEnvelopeAsync("capped");
        var first = new List<JsonElement>();
        for (var i = 0; i < 4; i++) first.Add(await device.ReceiveJsonAsync());
        Assert.Equal(["c0", "c1", "c2", "c3"], first.Select(m => m.Str("data")).ToArray());
        // The fifth only comes once one is acked (well before the 1 s ack timeout would resend c0).
        await AckAsync(device, first[0].Str("id"));
        Assert.Equal("c4", (await device.ReceiveJsonAsync()).Str("data"));
    }

    [Fact]
    public async Task Expired_messages_are_never_delivered_and_say_expired()
    {
        await using var sse = await SseClient.OpenAsync(Gw.Api, "api/events?types=expired");
        var id = (await SendAsync("too-late", "stale", "?ttl=0.5")).Str("id");
        var expired = await sse.NextAsync();
        Assert.Equal(("too-late", id), (expired.Data.Str("device"), expired.Data.Str("id")));
        Assert.Equal("expired", (await StatusAsync(id)).Str("status"));
        using var device = await Gw.ConnectAsync("too-late");
        await Gw.Api.PostTextAsync("api/devices/too-late/messages", "fresh");
        Assert.Equal("fresh", await device.ReceiveTextAsync());
    }

    [Fact]
    public async Task A_full_outbox_refuses_with_429_and_stores_nothing()
    {
        for (var i = 0; i < 20; i++) await SendAsync("full", $"f{i}");
        using var refused = await Gw.Api.PostTextAsync("api/devices/full/messages?ttl=60", "one too many");
        Assert.Equal((HttpStatusCode)429, refused.StatusCode);
        Assert.NotNull(refused.Headers.RetryAfter);
        Assert.Equal("outbox_full", (await refused.JsonAsync()).Str("type"));
        Assert.Equal(20, (await Gw.Api.GetJsonAsync("api/devices/full")).GetProperty("queued").GetInt32());
    }

    [Fact]
    public async Task An_idempotency_key_returns_the_same_message_without_a_second_copy()
    {
        var first = await SendAsync("idem", "once", key: "order-17");
        var again = await SendAsync("idem", "once", key: "order-17");
        Assert.Equal(first.Str("id"), again.Str("id"));
        Assert.Equal(1, (await Gw.Api.GetJsonAsync("api/devices/idem")).GetProperty("queued").GetInt32());
        using var device = await Gw.ConnectAsync("idem");
        var ttl0a = await SendAsync("idem", "now", "", key: "k0");
        var ttl0b = await SendAsync("idem", "now", "", key: "k0");
        Assert.Equal(ttl0a.Str("id"), ttl0b.Str("id"));
        Assert.Equal("once", await device.ReceiveTextAsync());
        Assert.Equal("now", await device.ReceiveTextAsync());
        await Gw.Api.PostTextAsync("api/devices/idem/messages", "marker");
        Assert.Equal("marker", await device.ReceiveTextAsync());
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("abc")]
    [InlineData("3601")]
    [InlineData("NaN")]
    public async Task Bad_ttls_are_400(string ttl)
    {
        Assert.Equal(HttpStatusCode.BadRequest, (await Gw.Api.PostTextAsync($"api/devices/x/messages?ttl={ttl}", "x")).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await Gw.Api.PostTextAsync($"api/groups/g/messages?ttl={ttl}", "x")).StatusCode);
    }

    [Fact]
    public async Task Queued_messages_can_be_cancelled_until_sent()
    {
        var queued = (await SendAsync("cancel-me", "never")).Str("id");
        Assert.Equal(HttpStatusCode.NoContent, (await Gw.Api.DeleteAsync($"api/messages/{queued}")).StatusCode);
        Assert.Equal("cancelled", (await StatusAsync(queued)).Str("status"));
        var kept = (await SendAsync("cancel-me", "kept")).Str("id");
        using var device = await Gw.ConnectAsync("cancel-me");
        Assert.Equal("kept", await device.ReceiveTextAsync());
        await ApiExtensions.EventuallyAsync(async () => (await StatusAsync(kept)).Str("status") == "sent", "sent");
        Assert.Equal(HttpStatusCode.Conflict, (await Gw.Api.DeleteAsync($"api/messages/{kept}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await Gw.Api.DeleteAsync("api/messages/00000000-0000-0000-0000-000000000000")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await Gw.Api.GetAsync("api/messages/nope")).StatusCode);
    }

    [Fact]
    public async Task Non_durable_messages_have_a_status_too()
    {
        using var device = await Gw.ConnectEnvelopeAsync("quick");
        var id = (await SendAsync("quick", "hi", "")).Str("id");
        var m = await device.ReceiveJsonAsync();
        Assert.Equal(id, m.Str("id"));
        await ApiExtensions.EventuallyAsync(async () => (await StatusAsync(id)).Str("status") == "sent", "sent");
        await AckAsync(device, id);
        await ApiExtensions.EventuallyAsync(async () => (await StatusAsync(id)).Str("status") == "acked", "acked");
    }

    [Fact]
    public async Task Group_messages_with_ttl_queue_for_offline_members()
    {
        using var online = await Gw.ConnectAsync("g-on");
        await Gw.Api.PutAsync("api/groups/crew/devices/g-on", null);
        await Gw.Api.PutAsync("api/groups/crew/devices/g-off", null);
        using var response = await Gw.Api.PostTextAsync("api/groups/crew/messages?ttl=60", "muster");
        var body = await response.JsonAsync();
        Assert.Equal((1, 1), (body.GetProperty("recipients").GetInt32(), body.GetProperty("queued").GetInt32()));
        Assert.Equal("muster", await online.ReceiveTextAsync());
        using var late = await Gw.ConnectEnvelopeAsync("g-off");
        var m = await late.ReceiveJsonAsync();
        Assert.Equal(("muster", "crew"), (m.Str("data"), m.Str("group")));

        using var noTtl = await Gw.Api.PostTextAsync("api/groups/crew/messages", "now only");
        var b = await noTtl.JsonAsync();
        Assert.Equal((2, 0), (b.GetProperty("recipients").GetInt32(), b.GetProperty("queued").GetInt32()));
    }

    [Fact]
    public async Task A_device_can_send_with_ttl_to_an_offline_device()
    {
        // The backend made d2d-r known (here: a group membership); a device cannot queue for made-up ids.
        using (var known = await Gw.Api.PutAsync("api/groups/d2d-known/devices/d2d-r", null)) Assert.Equal(HttpStatusCode.NoContent, known.StatusCode);
        using var sender = await Gw.ConnectEnvelopeAsync("d2d-s");
        await sender.SendJsonAsync(new { type = "send", to = "d2d-r", data = "see you", ttl = 60, @ref = "q" });
        var sent = await sender.ReceiveJsonAsync();
        Assert.Equal(("sent", "queued", "q"), (sent.Str("type"), sent.Str("status"), sent.Str("ref")));
        using var receiver = await Gw.ConnectEnvelopeAsync("d2d-r");
        var m = await receiver.ReceiveJsonAsync();
        Assert.Equal((sent.Str("id"), "d2d-s", "see you"), (m.Str("id"), m.Str("from"), m.Str("data")));
    }

    [Fact]
    public async Task Forgetting_a_device_closes_it_and_purges_everything()
    {
        using var device = await Gw.ConnectAsync("gone");
        await Gw.Api.PutAsync("api/groups/g-forget/devices/gone", null);
        using (var kick = await Gw.Api.DeleteAsync("api/devices/gone")) Assert.Equal(HttpStatusCode.NoContent, kick.StatusCode);
        Assert.Equal((4001, "disconnected"), await device.ReceiveCloseAsync());
        await SendAsync("gone2", "x");
        Assert.Equal(HttpStatusCode.NoContent, (await Gw.Api.DeleteAsync("api/devices/gone2")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await Gw.Api.GetAsync("api/devices/gone2")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await Gw.Api.GetAsync("api/devices/gone")).StatusCode);
        Assert.Empty((await Gw.Api.GetJsonAsync("api/groups/g-forget")).GetProperty("devices").EnumerateArray());
    }

    [Fact]
    public async Task Acked_events_reach_the_stream()
    {
        await using var sse = await SseClient.OpenAsync(Gw.Api, "api/events?types=acked");
        using var device = await Gw.ConnectEnvelopeAsync("ev-ack");
        var id = (await SendAsync("ev-ack", "x")).Str("id");
        await device.ReceiveJsonAsync();
        await AckAsync(device, id);
        var e = await sse.NextAsync();
        Assert.Equal(("acked", "ev-ack", id), (e.Event, e.Data.Str("device"), e.Data.Str("id")));
    }
}

public sealed class RestartTests
{
    [Fact]
    public async Task Groups_last_seen_and_the_outbox_survive_a_restart()
    {
        var dir = TempFolder.Create();
        try
        {
            string queuedId;
            await using (var gw = await TestGateway.StartAsync(dataPath: dir))
            {
                using (var d = await gw.ConnectAsync("persisted")) await d.CloseCleanlyAsync();
                await gw.Api.PutAsync("api/groups/keep/devices/persisted", null);
                await gw.Api.PutAsync("api/groups/keep/devices/never-connected", null);
                using var r = await gw.Api.PostTextAsync("api/devices/persisted/messages?ttl=600", "after restart");
                queuedId = (await r.JsonAsync()).Str("id");
            }
            await using var again = await TestGateway.StartAsync(dataPath: dir);
            Assert.Equal(["never-connected", "persisted"], (await again.Api.GetJsonAsync("api/groups/keep")).GetProperty("devices").EnumerateArray().Select(e => e.GetString()!).ToArray());
            var device = await again.Api.GetJsonAsync("api/devices/persisted");
            Assert.False(device.GetProperty("online").GetBoolean());
            Assert.Equal(JsonValueKind.Null, device.GetProperty("connectedAt").ValueKind);
            Assert.Equal(JsonValueKind.String, device.GetProperty("lastSeen").ValueKind);
            Assert.Equal(1, device.GetProperty("queued").GetInt32());
            Assert.Equal(["keep"], device.GetProperty("groups").EnumerateArray().Select(e => e.GetString()!).ToArray());
            Assert.Equal("queued", (await again.Api.GetJsonAsync($"api/messages/{queuedId}")).Str("status"));
            Assert.Equal(System.Net.HttpStatusCode.OK, (await again.Api.GetAsync("api/devices/never-connected")).StatusCode);
            using var back = await again.ConnectAsync("persisted");
            Assert.Equal("after restart", await back.ReceiveTextAsync());
        }
        finally
        {
            TempFolder.Delete(dir);
        }
    }
}
