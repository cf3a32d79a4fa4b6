using System.Net;
using DeviceGate.Client;
using DeviceGate.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace DeviceGate.Tests.Functional;

/// <summary>The backend SDK, registered through IHttpClientFactory, against the real gateway: every route.</summary>
public sealed class GatewayClientTests : GatewayTest
{
    private GatewayClient CreateClient()
    {
        var services = new ServiceCollection();
        services.AddDeviceGateClient(Gw.BaseUri, TestGateway.ApiKey);
        return services.BuildServiceProvider().GetRequiredService<GatewayClient>();
    }

    [Fact]
    public async Task SendBatchAsync_returns_one_result_per_item_in_order()
    {
        var client = CreateClient();
        using var device = await Gw.ConnectEnvelopeAsync("batched");
        var results = await client.SendBatchAsync([
            new BatchItem { Device = "batched", Text = "t" },
            new BatchItem { Device = "batched", Data = new { n = 1 } },
            new BatchItem { Device = "batched", Bytes = [1, 2] },
            new BatchItem { Device = "nobody", Text = "lost" },
            new BatchItem { Device = "later", Text = "kept", Ttl = TimeSpan.FromMinutes(1), IdempotencyKey = "b-1" },
        ]);
        Assert.Equal([true, true, true, false, true], results.Select(r => r.Succeeded));
        Assert.Equal(("not_connected", HttpStatusCode.NotFound), (results[3].Error!.Type, results[3].Error!.Status));
        Assert.Equal("queued", results[4].Status);
        Assert.Equal("t", (await device.ReceiveJsonAsync()).Str("data"));
        Assert.Equal(1, (await device.ReceiveJsonAsync()).GetProperty("data").GetProperty("n").GetInt32());
        Assert.Equal([1, 2], Convert.FromBase64String((await device.ReceiveJsonAsync()).Str("dataBase64")));
    }

    [Fact]
    public async Task Every_route_has_a_typed_call()
    {
        var client = CreateClient();
        using var device = await Gw.ConnectEnvelopeAsync("typed");
        using var cts = new CancellationTokenSource(Timeouts.Default);
        var events = client.EventsAsync(types: "message", device: "typed", ct: cts.Token).GetAsyncEnumerator(cts.Token);
        var nextEvent = events.MoveNextAsync().AsTask();

        var sent = await client.SendAsync("typed", "hello", idempotencyKey: "k-1");
        Assert.Equal("sent", sent.Status);
        Assert.Equal(sent.Id, (await client.SendAsync("typed", "hello", idempotencyKey: "k-1")).Id);
        Assert.Equal("hello", (await device.ReceiveJsonAsync()).Str("data"));
        await client.SendAsync("typed", new byte[] { 9, 8 });
        Assert.Equal([9, 8], Convert.FromBase64String((await device.ReceiveJsonAsync()).Str("dataBase64")));

        var queued = await client.SendAsync("elsewhere", "{\"a\":1}", ttl: TimeSpan.FromMinutes(5), asJson: true);
        Assert.Equal("queued", queued.Status);
        Assert.Equal("queued", (await client.GetMessageAsync(queued.Id)).Str("status"));
        Assert.Equal(queued.Id, (await client.GetDeviceMessagesAsync("elsewhere")).GetProperty("messages")[0].Str("id"));
        await client.CancelMessageAsync(queued.Id);
        var conflict = await Assert.ThrowsAsync<GatewayException>(() => client.CancelMessageAsync(queued.Id));
        Assert.Equal(HttpStatusCode.Conflict, conflict.Status);

        Assert.Equal(1, await client.BroadcastAsync("all"));
        Assert.Equal("all", (await device.ReceiveJsonAsync()).Str("data"));
        await client.AddToGroupAsync("typed-group", "typed");
        Assert.Equal(["typed"], await client.GetGroupAsync("typed-group"));
        Assert.Equal(1, (await client.ListGroupsAsync())["typed-group"]);
        Assert.Equal(new PublishResult(1, 0), await client.PublishAsync("typed-group", "group hello"));
        Assert.Equal("group hello", (await device.ReceiveJsonAsync()).Str("data"));
        await client.RemoveFromGroupAsync("typed-group", "typed");
        Assert.Empty(await client.GetGroupAsync("typed-group"));

        Assert.Contains((await client.ListDevicesAsync()).GetProperty("devices").EnumerateArray(), d => d.Str("id") == "typed");
        Assert.Contains((await client.ListDevicesAsync(includeOffline: true, search: "else")).GetProperty("devices").EnumerateArray(), d => d.Str("id") == "elsewhere");
        Assert.True((await client.GetDeviceAsync("typed")).GetProperty("online").GetBoolean());
        Assert.Equal(1, (await client.GetStatsAsync()).GetProperty("nodes")[0].GetProperty("connectedDevices").GetInt32());

        var serving = Task.Run(async () =>
        {
            var rpc = await device.ReceiveJsonAsync();
            await device.SendJsonAsync(new { type = "reply", id = rpc.Str("id"), data = new { ok = true } });
        });
        Assert.True((await client.RpcAsync("typed", new { cmd = "ping" }, TimeSpan.FromSeconds(5))).GetProperty("ok").GetBoolean());
        await serving;

        await device.SendJsonAsync(new { type = "send", to = "server", data = "for the stream" });
        Assert.True(await nextEvent.WaitAsync(Timeouts.Default));
        Assert.Equal(("message", "typed"), (events.Current.Type, events.Current.Device));

        await client.DisconnectAsync("typed");
        Assert.Equal((4001, "disconnected"), await device.ReceiveCloseAsync());
        var notConnected = await Assert.ThrowsAsync<GatewayException>(() => client.DisconnectAsync("typed"));
        Assert.Equal(("not_connected", HttpStatusCode.NotFound), (notConnected.Type, notConnected.Status));
        await client.RevokeTokensAsync("typed");
        await client.ForgetAsync("elsewhere");
        var gone = await Assert.ThrowsAsync<GatewayException>(() => client.GetDeviceAsync("elsewhere"));
        Assert.Equal(HttpStatusCode.NotFound, gone.Status);
        await cts.CancelAsync();
        await events.DisposeAsync();
    }

    [Fact]
    public async Task State_calls_patch_desired_with_if_match_report_and_read_the_delta()
    {
        await using var gw = await TestGateway.StartAsync();
        var client = new GatewayClient(gw.Api);
        var first = await client.PatchDesiredAsync("net-state", new { fw = "1.4" });
        Assert.Equal(1, first.GetProperty("desiredVersion").GetInt32());
        var stale = await Assert.ThrowsAsync<GatewayException>(() => client.PatchDesiredAsync("net-state", new { fw = "1.5" }, ifMatch: 0));
        Assert.Equal((System.Net.HttpStatusCode.PreconditionFailed, "version_mismatch"), (stale.Status, stale.Type));
        await client.PatchReportedAsync("net-state", new { fw = "1.3" });
        var doc = await client.GetStateAsync("net-state");
        Assert.Equal(("1.4", "1.3", "1.4"), (doc.GetProperty("desired").GetProperty("fw").GetString(), doc.GetProperty("reported").GetProperty("fw").GetString(),
            doc.GetProperty("delta").GetProperty("fw").GetString()));
    }

    [Fact]
    public async Task Tags_are_set_and_filter_the_device_list()
    {
        await using var gw = await TestGateway.StartAsync();
        var client = new GatewayClient(gw.Api);
        await client.SetTagsAsync("net-tag-1", new Dictionary<string, string> { ["site"] = "berlin", ["model"] = "k2" });
        await client.SetTagsAsync("net-tag-2", new Dictionary<string, string> { ["site"] = "berlin" });
        Assert.Equal("k2", (await client.GetDeviceAsync("net-tag-1")).GetProperty("tags").GetProperty("model").GetString());
        var page = await client.ListDevicesAsync(includeOffline: true, tags: new Dictionary<string, string> { ["site"] = "berlin", ["model"] = "k2" });
        Assert.Equal(["net-tag-1"], page.GetProperty("devices").EnumerateArray().Select(d => d.GetProperty("id").GetString()!).ToArray());
        var refused = await Assert.ThrowsAsync<GatewayException>(() => client.SetTagsAsync("net-tag-1", new Dictionary<string, string> { ["bad key"] = "x" }));
        Assert.Equal((System.Net.HttpStatusCode.BadRequest, "invalid_tags"), (refused.Status, refused.Type));
    }
}
