using System.Net;
using System.Text.Json;
using DeviceGate.Storage;
using DeviceGate.Tests.Infrastructure;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;

namespace DeviceGate.Tests.Functional;

/// <summary>What one device may originate (issue 13): durable quotas, known targets only, budgets that outlive reconnects, a group cap.</summary>
public sealed class DeviceQuotaTests : GatewayTest
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["DeviceGate:Limits:DeviceDurableMessagesPerMinute"] = "20",
        ["DeviceGate:Limits:DeviceStoredBytes"] = "4096",
        ["DeviceGate:Limits:DeviceMessagesPerSecond"] = "1",
        ["DeviceGate:Limits:DeviceMessagesBurst"] = "60",
        ["DeviceGate:Limits:MaxGroupsPerDevice"] = "3",
    };

    private async Task MakeKnownAsync(params string[] ids)
    {
        foreach (var id in ids)
        {
            using var r = await Gw.Api.PutAsync($"api/groups/known/devices/{id}", null);
            Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
        }
    }

    [Fact]
    public async Task A_durable_send_to_a_device_never_seen_is_offline_and_makes_nothing_known()
    {
        using var device = await Gw.ConnectEnvelopeAsync("q-sender");
        await device.SendJsonAsync(new { type = "send", to = "made-up-1", data = "x", ttl = 3600, @ref = "r" });
        var error = await device.ReceiveJsonAsync();
        Assert.Equal(("error", "offline", "r"), (error.Str("type"), error.Str("code"), error.Str("ref")));
        using var lookup = await Gw.Api.GetAsync("api/devices/made-up-1");
        Assert.Equal(HttpStatusCode.NotFound, lookup.StatusCode);
    }

    [Fact]
    public async Task Durable_sends_past_the_per_minute_quota_are_refused_with_quota_exceeded()
    {
        await MakeKnownAsync("q-target");
        using var device = await Gw.ConnectEnvelopeAsync("q-rate");
        for (var i = 0; i < 25; i++) await device.SendJsonAsync(new { type = "send", to = "q-target", data = i, ttl = 600, @ref = $"r{i}" });
        var answers = new List<JsonElement>();
        for (var i = 0; i < 25; i++) answers.Add(await device.ReceiveJsonAsync());
        // 20 at once, and one more if the refill (20 a minute) earned it while they were handled.
        var sent = answers.Count(a => a.Str("type") == "sent");
        Assert.InRange(sent, 20, 21);
        Assert.Equal(25 - sent, answers.Count(a => a.Str("type") == "error" && a.Str("code") == "quota_exceeded"));
        Assert.Equal(sent, (await Gw.Api.GetJsonAsync("api/devices/q-target")).GetProperty("queued").GetInt32());
    }

    [Fact]
    public async Task A_sender_s_pending_bytes_are_capped_and_freed_when_its_messages_finish()
    {
        await MakeKnownAsync("q-big");
        using var device = await Gw.ConnectEnvelopeAsync("q-bytes");
        var payload = new string('x', 1000);
        for (var i = 0; i < 5; i++) await device.SendJsonAsync(new { type = "send", to = "q-big", data = payload, ttl = 600, @ref = $"b{i}" });
        var answers = new List<JsonElement>();
        for (var i = 0; i < 5; i++) answers.Add(await device.ReceiveJsonAsync());
        // 1,002 bytes each (a JSON string, quotes included, stored once): four fit in 4,096, the fifth does not.
        Assert.Equal(4, answers.Count(a => a.Str("type") == "sent"));
        Assert.Equal("quota_exceeded", answers.Single(a => a.Str("type") == "error").Str("code"));

        // The target reads them (raw: delivered once written), which frees the sender's bytes.
        using (var target = await Gw.ConnectAsync("q-big"))
        {
            for (var i = 0; i < 4; i++) Assert.Equal(payload, await target.ReceiveTextAsync());
        }
        await ApiExtensions.EventuallyAsync(async () => (await Gw.Api.GetJsonAsync("api/devices/q-big")).GetProperty("queued").GetInt32() == 0, "delivered");
        await device.SendJsonAsync(new { type = "send", to = "q-big", data = payload, ttl = 600, @ref = "again" });
        Assert.Equal("sent", (await device.ReceiveJsonAsync()).Str("type"));
    }

    [Fact]
    public async Task A_group_publish_with_ttl_counts_once_per_member()
    {
        for (var i = 0; i < 25; i++)
        {
            using var r = await Gw.Api.PutAsync($"api/groups/crowd/devices/m{i}", null);
        }
        using var device = await Gw.ConnectEnvelopeAsync("q-pub");
        await device.SendJsonAsync(new { type = "publish", group = "crowd", data = "hi", ttl = 600, @ref = "p" });
        var error = await device.ReceiveJsonAsync();
        Assert.Equal(("error", "quota_exceeded"), (error.Str("type"), error.Str("code")));
        Assert.Equal(0, (await Gw.Api.GetJsonAsync("api/devices/m0")).GetProperty("queued").GetInt32());
        // A group small enough for the quota goes through.
        await MakeKnownAsync("s1", "s2");
        await device.SendJsonAsync(new { type = "publish", group = "known", data = "hi", ttl = 600, @ref = "small" });
        var sent = await device.ReceiveJsonAsync();
        Assert.Equal(("sent", "queued"), (sent.Str("type"), sent.Str("status")));
    }

    [Fact]
    public async Task A_device_s_json_string_is_stored_once()
    {
        await MakeKnownAsync("q-once");
        using var device = await Gw.ConnectEnvelopeAsync("q-store");
        await device.SendJsonAsync(new { type = "send", to = "q-once", data = "only one copy", ttl = 600, @ref = "s" });
        Assert.Equal("sent", (await device.ReceiveJsonAsync()).Str("type"));
        await using (var db = new SqliteConnection($"Data Source={Path.Combine(Gw.DataPath, SqliteStore.FileName)};Mode=ReadOnly"))
        {
            await db.OpenAsync();
            using var cmd = db.CreateCommand();
            cmd.CommandText = "SELECT length(data), raw IS NULL FROM messages WHERE sender = 'q-store';";
            using var r = await cmd.ExecuteReaderAsync();
            Assert.True(await r.ReadAsync());
            Assert.Equal(("\"only one copy\"".Length, true), (r.GetInt64(0), r.GetBoolean(1)));
        }
        using var target = await Gw.ConnectAsync("q-once");
        Assert.Equal("only one copy", await target.ReceiveTextAsync());
    }

    [Fact]
    public async Task The_message_budget_is_kept_across_reconnects()
    {
        // Burst 60, 1 a second: a device that spends its burst and reconnects gets no new one.
        var accepted = 0;
        for (var round = 0; round < 3; round++)
        {
            using var device = await Gw.ConnectEnvelopeAsync("q-reconnect");
            for (var i = 0; i < 40; i++) await device.SendJsonAsync(new { type = "send", to = "server", data = i, @ref = $"{round}-{i}" });
            for (var i = 0; i < 40; i++)
            {
                var answer = await device.ReceiveJsonAsync();
                if (answer.Str("type") == "sent") accepted++;
                else Assert.Equal("rate_limited", answer.Str("code"));
            }
            await device.CloseCleanlyAsync();
        }
        // 60 from the burst and a few earned while the test ran; without the shared budget it would be 120.
        Assert.InRange(accepted, 60, 80);
    }

    [Fact]
    public async Task Group_membership_is_capped_per_device_for_joins_and_for_the_api()
    {
        using var device = await Gw.ConnectEnvelopeAsync("q-joiner");
        foreach (var g in new[] { "g1", "g2", "g3", "g4" }) await device.SendJsonAsync(new { type = "join", group = g, @ref = g });
        var error = await device.ReceiveJsonAsync();
        Assert.Equal(("quota_exceeded", "g4"), (error.Str("code"), error.Str("ref")));
        Assert.Equal(["g1", "g2", "g3"], (await Gw.Api.GetJsonAsync("api/devices/q-joiner")).GetProperty("groups").EnumerateArray().Select(g => g.GetString()!).ToArray());

        using var api = await Gw.Api.PutAsync("api/groups/g5/devices/q-joiner", null);
        Assert.Equal(HttpStatusCode.Conflict, api.StatusCode);
        Assert.Equal("quota_exceeded", (await api.JsonAsync()).Str("type"));
        // Joining a group it is in already is no new membership.
        using var again = await Gw.Api.PutAsync("api/groups/g1/devices/q-joiner", null);
        Assert.Equal(HttpStatusCode.NoContent, again.StatusCode);
    }

    [Fact]
    public async Task Groups_are_listed_in_pages()
    {
        foreach (var g in new[] { "pa", "pb", "pc", "pd", "pe" })
        {
            using var r = await Gw.Api.PutAsync($"api/groups/{g}/devices/member-{g}", null);
        }
        var seen = new List<string>();
        string? after = null;
        do
        {
            var page = await Gw.Api.GetJsonAsync("api/groups?limit=2" + (after is null ? "" : "&after=" + after));
            var groups = page.GetProperty("groups").EnumerateArray().Select(g => g.Str("group")).ToList();
            Assert.True(groups.Count <= 2);
            seen.AddRange(groups);
            after = page.GetProperty("next").ValueKind == JsonValueKind.String ? page.Str("next") : null;
        }
        while (after is not null);
        Assert.Equal(["pa", "pb", "pc", "pd", "pe"], seen);
        using var bad = await Gw.Api.GetAsync("api/groups?limit=0");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
    }

    [Fact]
    public async Task An_envelope_ttl_above_MaxTtl_is_refused_like_the_api_s()
    {
        await MakeKnownAsync("q-ttl");
        using var device = await Gw.ConnectEnvelopeAsync("q-ttl-sender");
        await device.SendJsonAsync(new { type = "send", to = "q-ttl", data = 1, ttl = 8 * 24 * 3600, @ref = "long" });
        var error = await device.ReceiveJsonAsync();
        Assert.Equal(("error", "invalid_field", "long"), (error.Str("type"), error.Str("code"), error.Str("ref")));
        Assert.Contains("MaxTtl", error.Str("message"), StringComparison.Ordinal);
        await device.SendJsonAsync(new { type = "publish", group = "known", data = 1, ttl = 8 * 24 * 3600, @ref = "pub" });
        Assert.Equal("invalid_field", (await device.ReceiveJsonAsync()).Str("code"));
        using var api = await Gw.Api.PostTextAsync("api/devices/q-ttl/messages?ttl=700000", "x");
        Assert.Equal(System.Net.HttpStatusCode.BadRequest, api.StatusCode);
        Assert.Equal(0, (await Gw.Api.GetJsonAsync("api/devices/q-ttl")).GetProperty("queued").GetInt32());
    }
}
