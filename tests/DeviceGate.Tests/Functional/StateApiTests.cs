using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

/// <summary>The state document API (issue 15): merge patches, versions and If-Match, delta, limits, events, forget.</summary>
public sealed class StateApiTests : GatewayTest
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string> { ["DeviceGate:State:MaxBytes"] = "200" };

    private Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string json, string? ifMatch = null, string contentType = "application/merge-patch+json")
    {
        var request = new HttpRequestMessage(method, path) { Content = new StringContent(json, Encoding.UTF8) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
        if (ifMatch is not null) request.Headers.TryAddWithoutValidation("If-Match", ifMatch);
        return Gw.Api.SendAsync(request);
    }

    private static async Task<JsonElement> OkAsync(HttpResponseMessage r)
    {
        Assert.True(r.StatusCode == HttpStatusCode.OK, $"{(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
        return await r.JsonAsync();
    }

    [Fact]
    public async Task A_device_never_seen_has_an_empty_document()
    {
        using var r = await Gw.Api.GetAsync("api/devices/fresh-1/state");
        var doc = await OkAsync(r);
        Assert.Equal("\"0\"", r.Headers.ETag?.Tag);
        Assert.Equal(("{}", "{}", "{}", 0, 0, 0), (doc.GetProperty("desired").GetRawText(), doc.GetProperty("reported").GetRawText(), doc.GetProperty("delta").GetRawText(),
            doc.GetProperty("desiredVersion").GetInt32(), doc.GetProperty("reportedVersion").GetInt32(), doc.GetProperty("ackedVersion").GetInt32()));
        Assert.Equal(JsonValueKind.Null, doc.GetProperty("desiredAt").ValueKind);
    }

    [Fact]
    public async Task Merge_patches_nest_null_removes_versions_grow_and_the_delta_follows()
    {
        await using var events = await SseClient.OpenAsync(Gw.Api, "api/events?types=state");
        var first = await OkAsync(await SendAsync(HttpMethod.Patch, "api/devices/kiosk-9/state/desired", """{"fw":"1.4","screen":{"brightness":70,"mode":"day"}}"""));
        Assert.Equal(1, first.GetProperty("desiredVersion").GetInt32());
        using var second = await SendAsync(HttpMethod.Patch, "api/devices/kiosk-9/state/desired", """{"screen":{"mode":null,"contrast":5}}""", contentType: "application/json");
        var doc = await OkAsync(second);
        Assert.Equal("\"2\"", second.Headers.ETag?.Tag);
        Assert.Equal("""{"fw":"1.4","screen":{"brightness":70,"contrast":5}}""", doc.GetProperty("desired").GetRawText());
        var reported = await OkAsync(await SendAsync(HttpMethod.Patch, "api/devices/kiosk-9/state/reported", """{"fw":"1.3","screen":{"brightness":70}}"""));
        Assert.Equal("""{"fw":"1.4","screen":{"contrast":5}}""", reported.GetProperty("delta").GetRawText());
        Assert.Equal((2, 1), (reported.GetProperty("desiredVersion").GetInt32(), reported.GetProperty("reportedVersion").GetInt32()));
        // A patch that changes nothing keeps the version.
        Assert.Equal(2, (await OkAsync(await SendAsync(HttpMethod.Patch, "api/devices/kiosk-9/state/desired", """{"fw":"1.4"}"""))).GetProperty("desiredVersion").GetInt32());

        var e = await events.NextAsync();
        Assert.Equal(("state", "kiosk-9", "desired", 1), (e.Event, e.Data.Str("device"), e.Data.Str("part"), e.Data.GetProperty("version").GetInt32()));
        Assert.Equal("1.4", e.Data.GetProperty("patch").Str("fw"));
        Assert.Equal(2, (await events.NextAsync()).Data.GetProperty("version").GetInt32());
        Assert.Equal("reported", (await events.NextAsync()).Data.Str("part"));
    }

    [Fact]
    public async Task If_match_refuses_a_stale_version_and_of_two_racing_patches_one_wins()
    {
        await OkAsync(await SendAsync(HttpMethod.Put, "api/devices/race-1/state/desired", """{"a":1}"""));
        using (var stale = await SendAsync(HttpMethod.Patch, "api/devices/race-1/state/desired", """{"a":2}""", ifMatch: "\"0\""))
        {
            Assert.Equal(HttpStatusCode.PreconditionFailed, stale.StatusCode);
            Assert.Equal("version_mismatch", (await stale.JsonAsync()).Str("type"));
        }
        var racing = await Task.WhenAll(SendAsync(HttpMethod.Patch, "api/devices/race-1/state/desired", """{"a":3}""", ifMatch: "\"1\""),
            SendAsync(HttpMethod.Patch, "api/devices/race-1/state/desired", """{"a":4}""", ifMatch: "\"1\""));
        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.PreconditionFailed], racing.Select(r => r.StatusCode).Order());
        foreach (var r in racing) r.Dispose();
        var now = await Gw.Api.GetJsonAsync("api/devices/race-1/state");
        Assert.Equal(2, now.GetProperty("desiredVersion").GetInt32());
    }

    [Fact]
    public async Task Put_replaces_desired_whole()
    {
        await OkAsync(await SendAsync(HttpMethod.Patch, "api/devices/put-1/state/desired", """{"a":1,"b":{"c":2}}"""));
        var doc = await OkAsync(await SendAsync(HttpMethod.Put, "api/devices/put-1/state/desired", """{"z":true}""", contentType: "application/json"));
        Assert.Equal("""{"z":true}""", doc.GetProperty("desired").GetRawText());
    }

    [Theory]
    [InlineData("[1,2]", 400, "invalid_state")]
    [InlineData("\"text\"", 400, "invalid_state")]
    [InlineData("{\"a\":\"\\ud800\"}", 400, "invalid_state")]
    [InlineData("{not json", 400, "invalid_state")]
    public async Task A_body_that_is_no_json_object_is_refused(string body, int status, string type)
    {
        using var r = await SendAsync(HttpMethod.Patch, "api/devices/shape-1/state/desired", body);
        Assert.Equal((status, type), ((int)r.StatusCode, (await r.JsonAsync()).Str("type")));
    }

    [Fact]
    public async Task Nesting_past_32_and_a_part_over_MaxBytes_change_nothing()
    {
        var deep = string.Concat(Enumerable.Repeat("{\"a\":", 34)) + "1" + new string('}', 34);
        using (var r = await SendAsync(HttpMethod.Patch, "api/devices/big-1/state/desired", deep)) Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        await OkAsync(await SendAsync(HttpMethod.Patch, "api/devices/big-1/state/desired", """{"small":1}"""));
        using (var r = await SendAsync(HttpMethod.Patch, "api/devices/big-1/state/desired", $$"""{"big":"{{new string('x', 300)}}"}"""))
        {
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, r.StatusCode);
            Assert.Equal("state_too_large", (await r.JsonAsync()).Str("type"));
        }
        Assert.Equal(1, (await Gw.Api.GetJsonAsync("api/devices/big-1/state")).GetProperty("desiredVersion").GetInt32());
    }

    [Fact]
    public async Task Forgetting_a_device_removes_its_state()
    {
        await OkAsync(await SendAsync(HttpMethod.Patch, "api/devices/gone-1/state/desired", """{"a":1}"""));
        using (var forget = await Gw.Api.DeleteAsync("api/devices/gone-1")) Assert.Equal(HttpStatusCode.NoContent, forget.StatusCode);
        Assert.Equal(0, (await Gw.Api.GetJsonAsync("api/devices/gone-1/state")).GetProperty("desiredVersion").GetInt32());
    }

    [Fact]
    public async Task A_device_reports_its_own_state_with_an_envelope()
    {
        await using var events = await SseClient.OpenAsync(Gw.Api, "api/events?types=state");
        using var device = await Gw.ConnectEnvelopeAsync("reporter-1");
        await device.SendJsonAsync(new { type = "report", state = new { fw = "1.3", screen = new { on = true } }, @ref = "r1" });
        var answer = await device.ReceiveJsonAsync();
        Assert.Equal(("reported", 1, "r1"), (answer.Str("type"), answer.GetProperty("version").GetInt32(), answer.Str("ref")));
        await device.SendJsonAsync(new { type = "report", state = new { screen = new { on = (bool?)null } } });
        Assert.Equal(2, (await device.ReceiveJsonAsync()).GetProperty("version").GetInt32());
        var doc = await Gw.Api.GetJsonAsync("api/devices/reporter-1/state");
        Assert.Equal("""{"fw":"1.3","screen":{}}""", doc.GetProperty("reported").GetRawText());
        var e = await events.NextAsync();
        Assert.Equal(("reporter-1", "reported", 1), (e.Data.Str("device"), e.Data.Str("part"), e.Data.GetProperty("version").GetInt32()));

        await device.SendJsonAsync(new { type = "report", state = new[] { 1 }, @ref = "bad" });
        var invalid = await device.ReceiveJsonAsync();
        Assert.Equal(("error", "invalid_field", "bad"), (invalid.Str("type"), invalid.Str("code"), invalid.Str("ref")));
        await device.SendJsonAsync(new { type = "report", state = new { big = new string('x', 300) }, @ref = "big" });
        Assert.Equal("state_too_large", (await device.ReceiveJsonAsync()).Str("code"));
        await device.SendJsonAsync(new { type = "report", @ref = "none" });
        Assert.Equal("missing_field", (await device.ReceiveJsonAsync()).Str("code"));
        Assert.Equal(2, (await Gw.Api.GetJsonAsync("api/devices/reporter-1/state")).GetProperty("reportedVersion").GetInt32());
    }
}
