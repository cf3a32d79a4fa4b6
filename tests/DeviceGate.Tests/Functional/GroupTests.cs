using System.Net;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Functional;

public sealed class GroupTests : GatewayTest
{
    [Fact]
    public async Task Group_messages_reach_connected_members_only()
    {
        using var a = await Gw.ConnectAsync("ga");
        using var b = await Gw.ConnectAsync("gb");
        using var outsider = await Gw.ConnectAsync("gc");
        Assert.Equal(HttpStatusCode.NoContent, (await Gw.Api.PutAsync("api/groups/floor.1/devices/ga", null)).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await Gw.Api.PutAsync("api/groups/floor.1/devices/gb", null)).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await Gw.Api.PutAsync("api/groups/floor.1/devices/offline-1", null)).StatusCode);

        var group = await Gw.Api.GetJsonAsync("api/groups/floor.1");
        Assert.Equal("floor.1", group.GetProperty("group").GetString());
        Assert.Equal(["ga", "gb", "offline-1"], group.GetProperty("devices").EnumerateArray().Select(e => e.GetString()!).ToArray());

        using var response = await Gw.Api.PostTextAsync("api/groups/floor.1/messages", "lights off");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, (await response.JsonAsync()).GetProperty("recipients").GetInt32());
        Assert.Equal("lights off", await a.ReceiveTextAsync());
        Assert.Equal("lights off", await b.ReceiveTextAsync());

        // The outsider's next message is this one, not the group's.
        await Gw.Api.PostTextAsync("api/devices/gc/messages", "just you");
        Assert.Equal("just you", await outsider.ReceiveTextAsync());

        var device = await Gw.Api.GetJsonAsync("api/devices/ga");
        Assert.Equal(["floor.1"], device.GetProperty("groups").EnumerateArray().Select(e => e.GetString()!).ToArray());
    }

    [Fact]
    public async Task Removing_a_member_stops_its_group_messages()
    {
        using var a = await Gw.ConnectAsync("ra");
        using var b = await Gw.ConnectAsync("rb");
        await Gw.Api.PutAsync("api/groups/g2/devices/ra", null);
        await Gw.Api.PutAsync("api/groups/g2/devices/rb", null);
        Assert.Equal(HttpStatusCode.NoContent, (await Gw.Api.DeleteAsync("api/groups/g2/devices/ra")).StatusCode);
        using var response = await Gw.Api.PostTextAsync("api/groups/g2/messages", "only b");
        Assert.Equal(1, (await response.JsonAsync()).GetProperty("recipients").GetInt32());
        Assert.Equal("only b", await b.ReceiveTextAsync());
        await Gw.Api.PostTextAsync("api/devices/ra/messages", "direct");
        Assert.Equal("direct", await a.ReceiveTextAsync());
        Assert.Equal(["rb"], (await Gw.Api.GetJsonAsync("api/groups/g2")).GetProperty("devices").EnumerateArray().Select(e => e.GetString()!).ToArray());
    }

    [Fact]
    public async Task Unknown_groups_are_empty_and_bad_names_are_400()
    {
        var empty = await Gw.Api.GetJsonAsync("api/groups/nobody-here");
        Assert.Equal(0, empty.GetProperty("devices").GetArrayLength());
        Assert.Equal(0, (await (await Gw.Api.PostTextAsync("api/groups/nobody-here/messages", "x")).JsonAsync()).GetProperty("recipients").GetInt32());
        Assert.Equal(HttpStatusCode.BadRequest, (await Gw.Api.GetAsync("api/groups/.hidden")).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await Gw.Api.PutAsync("api/groups/.x/devices/a", null)).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await Gw.Api.PutAsync("api/groups/ok/devices/server", null)).StatusCode);
    }
}
