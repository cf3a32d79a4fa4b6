using System.Net;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

public sealed class GroupTests : IAsyncLifetime
{
    private TestGateway _gw = null!;

    public async Task InitializeAsync() => _gw = await TestGateway.StartAsync();

    public async Task DisposeAsync() => await _gw.DisposeAsync();

    [Fact]
    public async Task Group_messages_reach_connected_members_only()
    {
        using var a = await _gw.ConnectAsync("ga");
        using var b = await _gw.ConnectAsync("gb");
        using var outsider = await _gw.ConnectAsync("gc");
        Assert.Equal(HttpStatusCode.NoContent, (await _gw.Api.PutAsync("api/groups/floor.1/devices/ga", null)).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await _gw.Api.PutAsync("api/groups/floor.1/devices/gb", null)).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await _gw.Api.PutAsync("api/groups/floor.1/devices/offline-1", null)).StatusCode);

        var group = await _gw.Api.GetJsonAsync("api/groups/floor.1");
        Assert.Equal("floor.1", group.GetProperty("group").GetString());
        Assert.Equal(["ga", "gb", "offline-1"], group.GetProperty("devices").EnumerateArray().Select(e => e.GetString()!).ToArray());

        using var response = await _gw.Api.PostTextAsync("api/groups/floor.1/messages", "lights off");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, (await response.JsonAsync()).GetProperty("recipients").GetInt32());
        Assert.Equal("lights off", await a.ReceiveTextAsync());
        Assert.Equal("lights off", await b.ReceiveTextAsync());

        // The outsider's next message is this one, not the group's.
        await _gw.Api.PostTextAsync("api/devices/gc/messages", "just you");
        Assert.Equal("just you", await outsider.ReceiveTextAsync());

        var device = await _gw.Api.GetJsonAsync("api/devices/ga");
        Assert.Equal(["floor.1"], device.GetProperty("groups").EnumerateArray().Select(e => e.GetString()!).ToArray());
    }

    [Fact]
    public async Task Removing_a_member_stops_its_group_messages()
    {
        using var a = await _gw.ConnectAsync("ra");
        using var b = await _gw.ConnectAsync("rb");
        await _gw.Api.PutAsync("api/groups/g2/devices/ra", null);
        await _gw.Api.PutAsync("api/groups/g2/devices/rb", null);
        Assert.Equal(HttpStatusCode.NoContent, (await _gw.Api.DeleteAsync("api/groups/g2/devices/ra")).StatusCode);
        using var response = await _gw.Api.PostTextAsync("api/groups/g2/messages", "only b");
        Assert.Equal(1, (await response.JsonAsync()).GetProperty("recipients").GetInt32());
        Assert.Equal("only b", await b.ReceiveTextAsync());
        await _gw.Api.PostTextAsync("api/devices/ra/messages", "direct");
        Assert.Equal("direct", await a.ReceiveTextAsync());
        Assert.Equal(["rb"], (await _gw.Api.GetJsonAsync("api/groups/g2")).GetProperty("devices").EnumerateArray().Select(e => e.GetString()!).ToArray());
    }

    [Fact]
    public async Task Unknown_groups_are_empty_and_bad_names_are_400()
    {
        var empty = await _gw.Api.GetJsonAsync("api/groups/nobody-here");
        Assert.Equal(0, empty.GetProperty("devices").GetArrayLength());
        Assert.Equal(0, (await (await _gw.Api.PostTextAsync("api/groups/nobody-here/messages", "x")).JsonAsync()).GetProperty("recipients").GetInt32());
        Assert.Equal(HttpStatusCode.BadRequest, (await _gw.Api.GetAsync("api/groups/.hidden")).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await _gw.Api.PutAsync("api/groups/.x/devices/a", null)).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await _gw.Api.PutAsync("api/groups/ok/devices/server", null)).StatusCode);
    }
}
