using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using DeviceGate.Delivery;
using DeviceGate.Messages;
using DeviceGate.Tests.Functional;
using DeviceGate.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace DeviceGate.Tests.Delivery;

/// <summary>
/// The contract of <see cref="IDeviceRouter"/> (its doc comment), run against every implementation: the local
/// router of one node, and the Redis router of a node whose devices sit on another node. Devices connect to
/// <see cref="Holder"/>; the router under test is <see cref="Sender"/>'s.
/// </summary>
public abstract class DeviceRouterSpec : IAsyncLifetime
{
    protected abstract Task<(TestGateway Sender, TestGateway Holder)> StartAsync();

    protected TestGateway Sender { get; private set; } = null!;
    protected TestGateway Holder { get; private set; } = null!;

    private IDeviceRouter Router => Sender.App.Services.GetRequiredService<IDeviceRouter>();

    public async Task InitializeAsync() => (Sender, Holder) = await StartAsync();

    public virtual async Task DisposeAsync()
    {
        if (!ReferenceEquals(Sender, Holder)) await Sender.DisposeAsync();
        await Holder.DisposeAsync();
    }

    private static DeviceMessage Text(string text) => new(DeviceMessage.NewId(), DeviceId.Server, null, MessageData.Text(Encoding.UTF8.GetBytes(text)));

    [Fact]
    public async Task A_message_reaches_a_connected_device_and_an_unknown_one_is_refused()
    {
        using var device = await Holder.ConnectAsync("spec-one");
        Assert.True(await Router.DeliverAsync("spec-one", Text("hello"), durable: false, expiresAt: null));
        Assert.Equal("hello", await device.ReceiveTextAsync());
        Assert.False(await Router.DeliverAsync("spec-nobody", Text("lost"), durable: false, expiresAt: null));
    }

    [Fact]
    public async Task Messages_handed_over_in_order_arrive_in_order()
    {
        using var device = await Holder.ConnectAsync("spec-order");
        for (var i = 0; i < 50; i++) Assert.True(await Router.DeliverAsync("spec-order", Text($"m{i}"), durable: false, expiresAt: null));
        for (var i = 0; i < 50; i++) Assert.Equal($"m{i}", await device.ReceiveTextAsync());
    }

    [Fact]
    public async Task A_broadcast_reaches_every_connected_device_once()
    {
        using var a = await Holder.ConnectAsync("spec-b1");
        using var b = await Holder.ConnectAsync("spec-b2");
        Assert.True(await Router.BroadcastAsync(Text("all")) >= 2);
        Assert.Equal("all", await a.ReceiveTextAsync());
        Assert.Equal("all", await b.ReceiveTextAsync());
        // Exactly once: the next thing each gets is the next targeted message.
        await Router.DeliverAsync("spec-b1", Text("next"), durable: false, expiresAt: null);
        Assert.Equal("next", await a.ReceiveTextAsync());
    }

    [Fact]
    public async Task Close_ends_the_device_s_session_wherever_it_is()
    {
        using var device = await Holder.ConnectAsync("spec-close");
        Assert.True(await Router.CloseAsync("spec-close", 4001, "disconnected"));
        Assert.Equal((4001, "disconnected"), await device.ReceiveCloseAsync());
        Assert.False(await Router.CloseAsync("spec-never", 4001, "disconnected"));
    }

    [Fact]
    public async Task After_a_takeover_nothing_reaches_the_older_session()
    {
        using var old = await Holder.ConnectAsync("spec-move");
        // The newer session connects through the sender's node: in a cluster, a takeover across nodes.
        using var fresh = await Sender.ConnectAsync("spec-move");
        for (var i = 0; i < 5; i++) Assert.True(await Router.DeliverAsync("spec-move", Text($"after {i}"), durable: false, expiresAt: null));
        for (var i = 0; i < 5; i++) Assert.Equal($"after {i}", await fresh.ReceiveTextAsync());
        Assert.Equal((4000, "replaced"), await old.ReceiveCloseAsync());
    }

    [Fact]
    public async Task After_a_takeover_away_from_the_sender_s_node_nothing_reaches_the_older_session_there()
    {
        // The older session is the sender's own (in a cluster, reached without asking Redis); the newer one connects
        // through the other node. Once its 101 is out, the sender's registry no longer holds the older one.
        using var old = await Sender.ConnectAsync("spec-leave");
        var oldReceived = new List<string>();
        var oldClosed = Task.Run(() => old.ReceiveUntilCloseAsync(oldReceived));
        using var fresh = await Holder.ConnectAsync("spec-leave");
        for (var i = 0; i < 5; i++) Assert.True(await Router.DeliverAsync("spec-leave", Text($"after {i}"), durable: false, expiresAt: null));
        for (var i = 0; i < 5; i++) Assert.Equal($"after {i}", await fresh.ReceiveTextAsync());
        Assert.Equal(4000, (await oldClosed).Code);
        lock (oldReceived) Assert.Empty(oldReceived);
    }

    [Fact]
    public async Task An_rpc_is_answered_by_the_device_and_every_failure_has_its_status()
    {
        using var device = await Holder.ConnectEnvelopeAsync("spec-rpc");
        using var raw = await Holder.ConnectAsync("spec-rpc-raw");
        var call = Router.InvokeAsync("spec-rpc", MessageData.Json("{\"q\":1}"u8.ToArray()), TimeSpan.FromSeconds(10), CancellationToken.None);
        var rpc = await device.ReceiveJsonAsync();
        Assert.Equal(1, rpc.GetProperty("data").GetProperty("q").GetInt32());
        await device.SendJsonAsync(new { type = "reply", id = rpc.Str("id"), data = new { a = 2 } });
        var outcome = await call;
        Assert.Equal(RpcStatus.Replied, outcome.Status);
        Assert.Equal(2, JsonDocument.Parse(outcome.Reply!.Json!).RootElement.GetProperty("a").GetInt32());

        Assert.Equal(RpcStatus.NotConnected, (await Router.InvokeAsync("spec-rpc-none", MessageData.Json("1"u8.ToArray()), TimeSpan.FromSeconds(5), CancellationToken.None)).Status);
        Assert.Equal(RpcStatus.RawMode, (await Router.InvokeAsync("spec-rpc-raw", MessageData.Json("1"u8.ToArray()), TimeSpan.FromSeconds(5), CancellationToken.None)).Status);
        var silent = Router.InvokeAsync("spec-rpc", MessageData.Json("2"u8.ToArray()), TimeSpan.FromMilliseconds(300), CancellationToken.None);
        await device.ReceiveJsonAsync();
        Assert.Equal(RpcStatus.TimedOut, (await silent).Status);
    }
}

/// <summary>One node: <see cref="LocalRouter"/>.</summary>
public sealed class LocalRouterSpec : DeviceRouterSpec
{
    protected override async Task<(TestGateway, TestGateway)> StartAsync()
    {
        var gw = await TestGateway.StartAsync();
        return (gw, gw);
    }
}

/// <summary>Two nodes on a real redis-server: the sender's <c>RedisRouter</c> reaches devices held by the other node.</summary>
public sealed class RedisRouterSpec : DeviceRouterSpec
{
    protected override async Task<(TestGateway, TestGateway)> StartAsync()
    {
        var prefix = $"router-{Guid.NewGuid():N}:";
        var holder = await TestGateway.StartAsync(ClusterTests.Settings(RedisServer.Shared.Configuration, prefix, "holder"));
        var sender = await TestGateway.StartAsync(ClusterTests.Settings(RedisServer.Shared.Configuration, prefix, "sender"));
        return (sender, holder);
    }
}
