using System.Net;
using System.Text;
using System.Text.Json;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

/// <summary>Device tags (issue 15): PUT replaces, GET shows them, the device list filters by them, forget removes them.</summary>
public sealed class TagsApiTests : GatewayTest
{
    private Task<HttpResponseMessage> PutTagsAsync(string device, string json) =>
        Gw.Api.PutAsync($"api/devices/{device}/tags", new StringContent(json, Encoding.UTF8, "application/json"));

    private async Task SetAsync(string device, string json)
    {
        using var r = await PutTagsAsync(device, json);
        Assert.True(r.StatusCode == HttpStatusCode.NoContent, $"{(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
    }

    private async Task<string[]> ListAsync(string query) =>
        (await Gw.Api.GetJsonAsync($"api/devices?{query}")).GetProperty("devices").EnumerateArray().Select(d => d.Str("id")).ToArray();

    [Fact]
    public async Task Tags_are_set_shown_and_make_a_device_known()
    {
        Assert.Equal(HttpStatusCode.NotFound, (await Gw.Api.GetAsync("api/devices/tagged-1")).StatusCode);
        await SetAsync("tagged-1", """{"site":"berlin","model":"k2"}""");
        var device = await Gw.Api.GetJsonAsync("api/devices/tagged-1");
        Assert.Equal("""{"site":"berlin","model":"k2"}""", device.GetProperty("tags").GetRawText());
        await SetAsync("tagged-1", """{"site":"paris"}""");
        Assert.Equal("paris", (await Gw.Api.GetJsonAsync("api/devices/tagged-1")).GetProperty("tags").Str("site"));
        await SetAsync("tagged-1", "{}");
        Assert.Equal("{}", (await Gw.Api.GetJsonAsync("api/devices/tagged-1")).GetProperty("tags").GetRawText());
    }

    [Theory]
    [InlineData("""{"site":1}""")]
    [InlineData("""["site"]""")]
    [InlineData("""{"bad key":"x"}""")]
    [InlineData("""{"site":"\ud800"}""")]
    [InlineData("""{"site":"tab\there"}""")]
    public async Task Bad_tags_are_refused_with_400_invalid_tags_and_change_nothing(string json)
    {
        await SetAsync("tagged-2", """{"site":"berlin"}""");
        using var r = await PutTagsAsync("tagged-2", json);
        Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
        Assert.Equal("invalid_tags", (await r.JsonAsync()).Str("type"));
        Assert.Equal("berlin", (await Gw.Api.GetJsonAsync("api/devices/tagged-2")).GetProperty("tags").Str("site"));
    }

    [Fact]
    public async Task Limits_on_count_and_lengths_are_400()
    {
        var tooMany = "{" + string.Join(",", Enumerable.Range(0, 33).Select(i => $"\"k{i}\":\"v\"")) + "}";
        foreach (var json in new[] { tooMany, $$"""{"{{new string('k', 65)}}":"v"}""", $$"""{"k":"{{new string('v', 257)}}"}""", "{\"k\":\"" + new string('v', 70_000) + "\"}" })
        {
            using var r = await PutTagsAsync("tagged-3", json);
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            Assert.Equal("invalid_tags", (await r.JsonAsync()).Str("type"));
        }
        Assert.Equal(HttpStatusCode.NotFound, (await Gw.Api.GetAsync("api/devices/tagged-3")).StatusCode);
    }

    [Fact]
    public async Task The_device_list_filters_by_every_tag_connected_by_default_known_with_online_false()
    {
        await SetAsync("k-berlin-1", """{"site":"berlin","model":"k2"}""");
        await SetAsync("k-berlin-2", """{"site":"berlin","model":"k1"}""");
        await SetAsync("k-berlin-3", """{"site":"berlin","model":"k2"}""");
        await SetAsync("k-paris-1", """{"site":"paris","model":"k2"}""");
        using var one = await Gw.ConnectAsync("k-berlin-1");
        using var two = await Gw.ConnectAsync("k-berlin-2");
        using var untagged = await Gw.ConnectAsync("k-untagged");

        Assert.Equal(["k-berlin-1", "k-berlin-2"], await ListAsync("tag=site:berlin"));
        Assert.Equal(["k-berlin-1"], await ListAsync("tag=site:berlin&tag=model:k2"));
        Assert.Equal(["k-berlin-1", "k-berlin-3"], await ListAsync("tag=site:berlin&tag=model:k2&online=false"));
        Assert.Equal(["k-berlin-1", "k-berlin-3", "k-paris-1"], await ListAsync("tag=model:k2&online=false"));
        Assert.Empty(await ListAsync("tag=site:rome&online=false"));

        // The same pagination: limit and next.
        var first = await Gw.Api.GetJsonAsync("api/devices?tag=model:k2&online=false&limit=2");
        Assert.Equal("k-berlin-3", first.Str("next"));
        Assert.Equal(["k-paris-1"], await ListAsync("tag=model:k2&online=false&limit=2&after=k-berlin-3"));
        var online = (await Gw.Api.GetJsonAsync("api/devices?tag=model:k2&online=false")).GetProperty("devices").EnumerateArray()
            .ToDictionary(d => d.Str("id"), d => d.GetProperty("online").GetBoolean());
        Assert.Equal(new Dictionary<string, bool> { ["k-berlin-1"] = true, ["k-berlin-3"] = false, ["k-paris-1"] = false }, online);

        using var bad = await Gw.Api.GetAsync("api/devices?tag=nocolon");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
    }

    [Fact]
    public async Task Forget_removes_the_tags()
    {
        await SetAsync("tagged-gone", """{"site":"berlin"}""");
        using (var r = await Gw.Api.DeleteAsync("api/devices/tagged-gone")) Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
        Assert.Empty(await ListAsync("tag=site:berlin&online=false"));
        Assert.Equal(HttpStatusCode.NotFound, (await Gw.Api.GetAsync("api/devices/tagged-gone")).StatusCode);
    }

    [Fact]
    public async Task Tags_survive_a_restart()
    {
        var dir = TempFolder.Create();
        try
        {
            await using (var gw = await TestGateway.StartAsync(dataPath: dir))
            {
                using var r = await gw.Api.PutAsync("api/devices/tagged-kept/tags", new StringContent("""{"site":"oslo"}""", Encoding.UTF8, "application/json"));
                Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
            }
            await using var again = await TestGateway.StartAsync(dataPath: dir);
            Assert.Equal("oslo", (await again.Api.GetJsonAsync("api/devices/tagged-kept")).GetProperty("tags").Str("site"));
            var list = await again.Api.GetJsonAsync("api/devices?tag=site:oslo&online=false");
            Assert.Equal(["tagged-kept"], list.GetProperty("devices").EnumerateArray().Select(d => d.Str("id")).ToArray());
        }
        finally
        {
            TempFolder.Delete(dir);
        }
    }
}
