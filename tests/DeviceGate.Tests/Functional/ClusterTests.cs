using System.Net;
using System.Net.WebSockets;
using System.Text.Json;
using DeviceGate.Tests.Infrastructure;
using MQTTnet;

namespace DeviceGate.Tests.Functional;

/// <summary>Two real gateways (separate Kestrel hosts, separate data folders) sharing one real redis-server.</summary>
public sealed class ClusterTests : ClusterSpec
{
    protected override string Redis => RedisServer.Shared.Configuration;
}

/// <summary>The same two gateways on a Redis Cluster of three primaries with a replica each (keys spread over slots).</summary>
public sealed class RedisClusterTests : ClusterSpec
{
    protected override string Redis => RedisClusterSet.Shared.Configuration;
}

/// <summary>What two nodes do together, whatever Redis they share: one test base, one fixture per kind of Redis.</summary>
public abstract class ClusterSpec : IAsyncLifetime
{
    /// <summary>The StackExchange.Redis configuration both nodes use.</summary>
    protected abstract string Redis { get; }

    private readonly string _prefix = $"cluster-{Guid.NewGuid():N}:";
    private TestGateway _one = null!;
    private TestGateway _two = null!;

    public static Dictionary<string, string> Settings(string redis, string prefix, string node) => new()
    {
        ["DeviceGate:Redis:Configuration"] = redis,
        ["DeviceGate:Redis:Prefix"] = prefix,
        ["DeviceGate:Cluster:NodeId"] = node,
        ["DeviceGate:Cluster:PresenceLease"] = "00:00:03",
    };

    public async Task InitializeAsync()
    {
        _one = await TestGateway.StartAsync(Settings(Redis, _prefix, "node-1"));
        _two = await TestGateway.StartAsync(Settings(Redis, _prefix, "node-2"));
    }

    public async Task DisposeAsync()
    {
        await _one.DisposeAsync();
        await _two.DisposeAsync();
    }

    [Fact]
    public async Task An_mqtt_device_on_node_1_gets_sends_and_rpcs_through_node_2_and_a_websocket_connect_on_node_2_takes_it_over()
    {
        var port = MqttDevice.FreePort();
        var settings = Settings(Redis, _prefix, "mqtt-node-1");
        settings["DeviceGate:Mqtt:Enabled"] = "true";
        settings["DeviceGate:Mqtt:TcpPort"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await using var mqttNode = await TestGateway.StartAsync(settings);
        await using var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(port, "mqtt-far", mqttNode.Token("mqtt-far")));
        await device.SubscribeAsync("devices/mqtt-far/messages");
        await device.SubscribeAsync("devices/mqtt-far/rpc");

        var shown = await _two.Api.GetJsonAsync("api/devices/mqtt-far");
        Assert.Equal(("mqtt-node-1", "mqtt", "5"), (shown.Str("node"), shown.Str("transport"), shown.Str("protocol")));
        using (var sent = await _two.Api.PostTextAsync("api/devices/mqtt-far/messages?ttl=60", "via node 2"))
        {
            Assert.Equal(HttpStatusCode.Accepted, sent.StatusCode);
            var id = (await sent.JsonAsync()).Str("id");
            Assert.Equal("via node 2", (await device.ReceiveAsync()).ApplicationMessage.ConvertPayloadToString());
            await ApiExtensions.EventuallyAsync(async () => (await _two.Api.GetJsonAsync($"api/messages/{id}")).Str("status") == "acked", "acked, read on node 2");
        }
        var call = _two.Api.PostBytesAsync("api/devices/mqtt-far/rpc?timeout=10", "{\"q\":1}"u8.ToArray(), "application/json");
        var request = (await device.ReceiveAsync()).ApplicationMessage;
        await device.Client.PublishAsync(new MQTTnet.MqttApplicationMessageBuilder().WithTopic(request.ResponseTopic).WithCorrelationData(request.CorrelationData)
            .WithPayload("{\"a\":2}").WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build());
        using (var answered = await call)
        {
            Assert.Equal(HttpStatusCode.OK, answered.StatusCode);
            Assert.Equal(2, (await answered.JsonAsync()).GetProperty("a").GetInt32());
        }

        using var ws = await _two.ConnectAsync("mqtt-far");
        var gone = await device.Disconnected.WaitAsync(Timeouts.Default);
        Assert.Equal(MQTTnet.MqttClientDisconnectReason.SessionTakenOver, gone.Reason);
    }

    [Fact]
    public async Task An_mqtt_session_kept_on_one_node_resumes_on_the_other()
    {
        var (portA, portB) = (MqttDevice.FreePort(), MqttDevice.FreePort());
        Dictionary<string, string> Mqtt(string node, int port)
        {
            var settings = Settings(Redis, _prefix, node);
            settings["DeviceGate:Mqtt:Enabled"] = "true";
            settings["DeviceGate:Mqtt:TcpPort"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return settings;
        }
        await using var nodeA = await TestGateway.StartAsync(Mqtt("mqtt-a", portA));
        await using var nodeB = await TestGateway.StartAsync(Mqtt("mqtt-b", portB));
        await using (var first = await MqttDevice.ConnectAsync(MqttDevice.Tcp(portA, "roamer", nodeA.Token("roamer")).WithCleanStart(false).WithSessionExpiryInterval(600)))
        {
            Assert.False(first.Connected.IsSessionPresent);
            await first.SubscribeAsync("devices/roamer/messages");
        }
        await using var moved = await MqttDevice.ConnectAsync(MqttDevice.Tcp(portB, "roamer", nodeB.Token("roamer")).WithCleanStart(false).WithSessionExpiryInterval(600));
        Assert.True(moved.Connected.IsSessionPresent);
        using var sent = await _one.Api.PostTextAsync("api/devices/roamer/messages?ttl=60", "found you");
        Assert.Equal(HttpStatusCode.Accepted, sent.StatusCode);
        Assert.Equal("found you", (await moved.ReceiveAsync()).ApplicationMessage.ConvertPayloadToString());
    }

    [Fact]
    public async Task A_send_through_one_node_reaches_a_device_on_the_other()
    {
        using var device = await _one.ConnectAsync("far-away");
        using var now = await _two.Api.PostTextAsync("api/devices/far-away/messages", "via node 2");
        Assert.Equal(HttpStatusCode.Accepted, now.StatusCode);
        Assert.Equal("sent", (await now.JsonAsync()).Str("status"));
        Assert.Equal("via node 2", await device.ReceiveTextAsync());

        using var durable = await _two.Api.PostTextAsync("api/devices/far-away/messages?ttl=60", "durable via node 2");
        var id = (await durable.JsonAsync()).Str("id");
        Assert.Equal("durable via node 2", await device.ReceiveTextAsync());
        await ApiExtensions.EventuallyAsync(async () => (await _one.Api.GetJsonAsync($"api/messages/{id}")).Str("status") == "sent", "status shared");
        Assert.Equal(HttpStatusCode.NotFound, (await _two.Api.PostTextAsync("api/devices/nowhere/messages", "x")).StatusCode);
    }

    [Fact]
    public async Task A_batch_through_one_node_reaches_devices_on_both_in_order_and_queues_for_offline_ones()
    {
        using var near = await _two.ConnectAsync("batch-near");
        using var far = await _one.ConnectAsync("batch-far");
        var body = string.Join("\n", Enumerable.Range(0, 6).Select(i =>
            $$"""{"device":"{{(i % 2 == 0 ? "batch-far" : "batch-near")}}","text":"b{{i}}","ttl":{{(i < 3 ? 0 : 60)}}}"""))
            + "\n{\"device\":\"batch-offline\",\"text\":\"later\",\"ttl\":60}\n";
        using var response = await _two.Api.PostBytesAsync("api/messages/batch", System.Text.Encoding.UTF8.GetBytes(body), "application/x-ndjson");
        var json = await response.JsonAsync();
        Assert.Equal((6, 1, 0), (json.GetProperty("sent").GetInt32(), json.GetProperty("queued").GetInt32(), json.GetProperty("failed").GetInt32()));
        // Items accepted by one node keep their order per device, whichever node holds the device.
        foreach (var i in new[] { 0, 2, 4 }) Assert.Equal($"b{i}", await far.ReceiveTextAsync());
        foreach (var i in new[] { 1, 3, 5 }) Assert.Equal($"b{i}", await near.ReceiveTextAsync());
        Assert.Equal(1, (await _one.Api.GetJsonAsync("api/devices/batch-offline")).GetProperty("queued").GetInt32());
    }

    [Fact]
    public async Task State_written_through_one_node_is_read_on_the_other_with_one_version_order()
    {
        using var patch = new HttpRequestMessage(HttpMethod.Patch, "api/devices/shared-state/state/desired")
        {
            Content = new StringContent("""{"fw":"2.0"}""", System.Text.Encoding.UTF8, "application/json"),
        };
        using (var r = await _two.Api.SendAsync(patch)) Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        using var report = new HttpRequestMessage(HttpMethod.Patch, "api/devices/shared-state/state/reported")
        {
            Content = new StringContent("""{"fw":"1.9"}""", System.Text.Encoding.UTF8, "application/json"),
        };
        using (var r = await _one.Api.SendAsync(report)) Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var doc = await _one.Api.GetJsonAsync("api/devices/shared-state/state");
        Assert.Equal(("2.0", "1.9", "2.0", 1, 1), (doc.GetProperty("desired").Str("fw"), doc.GetProperty("reported").Str("fw"), doc.GetProperty("delta").Str("fw"),
            doc.GetProperty("desiredVersion").GetInt32(), doc.GetProperty("reportedVersion").GetInt32()));
    }

    [Fact]
    public async Task Desired_state_patched_through_node_two_reaches_the_device_on_node_one_and_its_report_reads_on_node_two()
    {
        using var device = await _one.ConnectEnvelopeAsync("state-far");
        using (var patch = new HttpRequestMessage(HttpMethod.Patch, "api/devices/state-far/state/desired")
        {
            Content = new StringContent("""{"fw":"2.1"}""", System.Text.Encoding.UTF8, "application/merge-patch+json"),
        })
        using (var r = await _two.Api.SendAsync(patch)) Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var state = await device.ReceiveJsonAsync();
        Assert.Equal(("state", 1, "2.1"), (state.Str("type"), state.GetProperty("version").GetInt32(), state.GetProperty("desired").Str("fw")));
        await device.SendJsonAsync(new { type = "ack", id = state.Str("id") });
        await device.SendTextAsync("""{"type":"report","state":{"fw":"2.1"}}""");
        Assert.Equal("reported", (await device.ReceiveJsonAsync()).Str("type"));
        await ApiExtensions.EventuallyAsync(async () =>
        {
            var doc = await _two.Api.GetJsonAsync("api/devices/state-far/state");
            return doc.GetProperty("ackedVersion").GetInt32() == 1 && doc.GetProperty("reported").GetRawText() == """{"fw":"2.1"}""" && doc.GetProperty("delta").GetRawText() == "{}";
        }, "ack and report visible on node 2");
        Assert.Equal("acked", (await _two.Api.GetJsonAsync($"api/messages/{state.Str("id")}")).Str("status"));
    }

    [Fact]
    public async Task Desired_state_patched_while_offline_is_delivered_once_on_whichever_node_the_device_connects_to()
    {
        foreach (var patch in new[] { """{"a":1}""", """{"a":2}""" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Patch, "api/devices/state-later/state/desired")
            {
                Content = new StringContent(patch, System.Text.Encoding.UTF8, "application/merge-patch+json"),
            };
            using var r = await _one.Api.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        }
        using var device = await _two.ConnectEnvelopeAsync("state-later");
        var state = await device.ReceiveJsonAsync();
        Assert.Equal(("state", 2), (state.Str("type"), state.GetProperty("version").GetInt32()));
        await _two.Api.PostTextAsync("api/devices/state-later/messages", "next");
        Assert.Equal("next", (await device.ReceiveJsonAsync()).Str("data"));
    }

    [Fact]
    public async Task Tags_set_through_one_node_filter_the_device_list_on_the_other()
    {
        using var device = await _one.ConnectAsync("tag-far");
        using (var r = await _two.Api.PutAsync("api/devices/tag-far/tags", new StringContent("""{"site":"lyon"}""", System.Text.Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
        }
        using (var r = await _two.Api.PutAsync("api/devices/tag-offline/tags", new StringContent("""{"site":"lyon"}""", System.Text.Encoding.UTF8, "application/json")))
        {
            Assert.Equal(HttpStatusCode.NoContent, r.StatusCode);
        }
        Assert.Equal("lyon", (await _one.Api.GetJsonAsync("api/devices/tag-far")).GetProperty("tags").Str("site"));
        var online = await _two.Api.GetJsonAsync("api/devices?tag=site:lyon");
        Assert.Equal(["tag-far"], online.GetProperty("devices").EnumerateArray().Select(d => d.Str("id")).ToArray());
        var known = await _one.Api.GetJsonAsync("api/devices?tag=site:lyon&online=false");
        Assert.Equal(["tag-far", "tag-offline"], known.GetProperty("devices").EnumerateArray().Select(d => d.Str("id")).ToArray());
    }

    [Fact]
    public async Task Scoped_keys_and_issuer_tokens_work_the_same_on_every_node()
    {
        await using var issuer = await TestIssuer.StartAsync();
        var key = TestIssuer.NewEcKey("cluster-ec");
        issuer.Publish(key);
        var prefix = $"cluster-id-{Guid.NewGuid():N}:";
        Dictionary<string, string> With(string node) => new(Settings(Redis, prefix, node))
        {
            ["DeviceGate:Auth:Keys:sender:Key"] = "cluster-sender-key-0123456789",
            ["DeviceGate:Auth:Keys:sender:Scopes:0"] = "messages:send:idp-*",
            ["DeviceGate:Auth:Jwt:JwksUrl"] = issuer.JwksUrl,
            ["DeviceGate:Auth:Jwt:RequireHttps"] = "false",
        };
        await using var one = await TestGateway.StartAsync(With("id-node-1"));
        await using var two = await TestGateway.StartAsync(With("id-node-2"));
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(one.Logs.Lines.Any(l => l.Contains("[1500]", StringComparison.Ordinal))), "node 1 has the keys");
        using var device = new ClientWebSocket();
        device.Options.SetRequestHeader("Authorization", "Bearer " + issuer.Sign(key, "ES256", new Dictionary<string, object> { ["sub"] = "idp-dev" }));
        await device.ConnectAsync(one.WsUri("ws?deviceId=idp-dev"), new CancellationTokenSource(Timeouts.Default).Token);
        using var sender = ApiExtensions.Client(two.BaseUri, "cluster-sender-key-0123456789");
        using (var sent = await sender.PostAsync("api/devices/idp-dev/messages", new StringContent("across nodes"))) Assert.Equal(HttpStatusCode.Accepted, sent.StatusCode);
        Assert.Equal("across nodes", await device.ReceiveTextAsync());
        using (var refused = await sender.PostAsync("api/devices/other-dev/messages", new StringContent("no"))) Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
    }

    [Fact]
    public async Task Presence_from_any_node_lists_every_node_s_devices()
    {
        using var a = await _one.ConnectAsync("p-one");
        using var b = await _two.ConnectAsync("p-two");
        foreach (var gw in new[] { _one, _two })
        {
            var list = await gw.Api.GetJsonAsync("api/devices");
            var nodes = list.GetProperty("devices").EnumerateArray().ToDictionary(d => d.Str("id"), d => d.Str("node"));
            Assert.Equal("node-1", nodes["p-one"]);
            Assert.Equal("node-2", nodes["p-two"]);
            var one = await gw.Api.GetJsonAsync("api/devices/p-one");
            Assert.True(one.GetProperty("online").GetBoolean());
            Assert.Equal("node-1", one.Str("node"));
        }
        await a.CloseCleanlyAsync();
        await ApiExtensions.EventuallyAsync(async () => !(await _two.Api.GetJsonAsync("api/devices/p-one")).GetProperty("online").GetBoolean(), "offline everywhere");
    }

    [Fact]
    public async Task Listings_page_through_both_nodes_sets_in_id_order_and_a_moved_device_is_listed_once_under_its_node()
    {
        var ids = new[] { "l-a", "l-b", "l-c", "l-d", "l-e", "l-f", "l-g" };
        var sockets = new List<ClientWebSocket>();
        for (var i = 0; i < ids.Length; i++) sockets.Add(await (i % 2 == 0 ? _one : _two).ConnectAsync(ids[i]));
        async Task<List<(string Id, string Node)>> AllAsync(TestGateway gw)
        {
            var all = new List<(string, string)>();
            string? after = null;
            do
            {
                var page = await gw.Api.GetJsonAsync("api/devices?limit=2" + (after is null ? "" : $"&after={after}"));
                all.AddRange(page.GetProperty("devices").EnumerateArray().Select(d => (d.Str("id"), d.Str("node"))));
                after = page.TryGetProperty("next", out var next) && next.ValueKind == JsonValueKind.String ? next.GetString() : null;
            }
            while (after is not null);
            return all;
        }
        var listed = await AllAsync(_two);
        Assert.Equal(ids, listed.Select(d => d.Id));
        Assert.Equal(ids.Select((_, i) => i % 2 == 0 ? "node-1" : "node-2"), listed.Select(d => d.Node));

        // l-a moves to node 2 (node 1 closes its connection with 4000).
        using var moved = await _two.ConnectAsync("l-a");
        Assert.Equal(4000, (await sockets[0].ReceiveCloseAsync()).Code);
        await ApiExtensions.EventuallyAsync(async () => (await AllAsync(_one)).Count(d => d.Id == "l-a") == 1 && (await AllAsync(_one)).Single(d => d.Id == "l-a").Node == "node-2",
            "listed once, under node 2");
        using var broadcast = await _one.Api.PostTextAsync("api/broadcast", "count me");
        Assert.Equal(ids.Length, (await broadcast.JsonAsync()).GetProperty("recipients").GetInt32());
        foreach (var socket in sockets) socket.Dispose();
    }

    [Fact]
    public async Task Broadcast_and_group_messages_reach_every_node_exactly_once()
    {
        using var a = await _one.ConnectAsync("b-one");
        using var b = await _two.ConnectAsync("b-two");
        using var broadcast = await _one.Api.PostTextAsync("api/broadcast", "to everyone");
        Assert.Equal(2, (await broadcast.JsonAsync()).GetProperty("recipients").GetInt32());
        Assert.Equal("to everyone", await a.ReceiveTextAsync());
        Assert.Equal("to everyone", await b.ReceiveTextAsync());

        await _one.Api.PutAsync("api/groups/both/devices/b-one", null);
        await _two.Api.PutAsync("api/groups/both/devices/b-two", null);
        Assert.Equal(["b-one", "b-two"], (await _one.Api.GetJsonAsync("api/groups/both")).GetProperty("devices").EnumerateArray().Select(d => d.GetString()!).ToArray());
        using var group = await _two.Api.PostTextAsync("api/groups/both/messages", "to the group");
        Assert.Equal(2, (await group.JsonAsync()).GetProperty("recipients").GetInt32());
        Assert.Equal("to the group", await a.ReceiveTextAsync());
        Assert.Equal("to the group", await b.ReceiveTextAsync());

        // Exactly once: the next thing each sees is this marker.
        await _one.Api.PostTextAsync("api/devices/b-two/messages", "marker");
        await _two.Api.PostTextAsync("api/devices/b-one/messages", "marker");
        Assert.Equal("marker", await a.ReceiveTextAsync());
        Assert.Equal("marker", await b.ReceiveTextAsync());
    }

    [Fact]
    public async Task A_takeover_on_another_node_closes_the_old_connection_and_nothing_reaches_it_after()
    {
        using var old = await _one.ConnectAsync("mover");
        var oldReceived = new List<string>();
        var oldClosed = Task.Run(() => old.ReceiveUntilCloseAsync(oldReceived));
        using var fresh = await _two.ConnectAsync("mover");
        // Straight after the new connection's 101, sends through either node go to the new connection only.
        for (var i = 0; i < 10; i++)
        {
            var via = i % 2 == 0 ? _one : _two;
            Assert.Equal(HttpStatusCode.Accepted, (await via.Api.PostTextAsync("api/devices/mover/messages", $"after {i}")).StatusCode);
        }
        // All ten reach the new connection. Their order is only guaranteed per accepting node: a send through node 1
        // crosses Redis pub/sub, so the next one, accepted locally by node 2, may overtake it (docs/delivery.md).
        var received = new List<string>();
        for (var i = 0; i < 10; i++) received.Add(await fresh.ReceiveTextAsync());
        Assert.Equal(Enumerable.Range(0, 10).Select(i => $"after {i}"), received.Order(StringComparer.Ordinal));
        Assert.Equal(Enumerable.Range(0, 5).Select(i => $"after {2 * i + 1}"), received.Where(r => (r[^1] - '0') % 2 == 1));
        Assert.Equal((4000, "replaced"), await oldClosed);
        lock (oldReceived) Assert.Empty(oldReceived);
        Assert.Equal("node-2", (await _one.Api.GetJsonAsync("api/devices/mover")).Str("node"));
    }

    /// <summary>
    /// Presence says a node "ghost" holds <paramref name="device"/> at epoch 7, and the returned channel hears what is
    /// published on ghost's channel (nothing there answers unless the test does).
    /// </summary>
    private async Task<System.Threading.Channels.Channel<JsonDocument>> HauntAsync(StackExchange.Redis.IConnectionMultiplexer redis, string device)
    {
        var keys = new DeviceGate.Cluster.RedisKeys(_prefix);
        var heard = System.Threading.Channels.Channel.CreateUnbounded<JsonDocument>();
        (await redis.GetSubscriber().SubscribeAsync(keys.NodeChannel("ghost"))).OnMessage(m => heard.Writer.TryWrite(JsonDocument.Parse((byte[])m.Message!)));
        await redis.GetDatabase().StringSetAsync(keys.DevicePresence(device), $"ghost|7|{DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()}|websocket|raw");
        return heard;
    }

    private Task<TestGateway> NodeAsync(string node, string takeoverConfirmation) =>
        TestGateway.StartAsync(new Dictionary<string, string>(Settings(Redis, _prefix, node)) { ["DeviceGate:Cluster:TakeoverConfirmation"] = takeoverConfirmation });

    [Fact]
    public async Task A_takeover_from_another_node_completes_only_once_that_node_confirmed_its_close()
    {
        await using var three = await NodeAsync("node-3", takeoverConfirmation: "00:00:30");
        await using var redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(Redis);
        var heard = await HauntAsync(redis, "haunted");

        var connecting = three.ConnectAsync("haunted");
        using var close = await heard.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(("close", "haunted", 7L, "node-3"),
            (close.RootElement.Str("type"), close.RootElement.Str("device"), close.RootElement.GetProperty("epoch").GetInt64(), close.RootElement.Str("origin")));
        // Not a wait for something to happen: the connect must still be waiting a while later (the old node has not said
        // it let go, and until it does a send through it could still reach its old connection).
        await Task.Delay(300);
        Assert.False(connecting.IsCompleted);
        var keys = new DeviceGate.Cluster.RedisKeys(_prefix);
        await redis.GetSubscriber().PublishAsync(keys.NodeChannel("node-3"), """{"type":"closed","origin":"ghost","device":"haunted","epoch":7}""");
        using var device = await connecting.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(HttpStatusCode.Accepted, (await _two.Api.PostTextAsync("api/devices/haunted/messages", "here")).StatusCode);
        Assert.Equal("here", await device.ReceiveTextAsync());
    }

    [Fact]
    public async Task A_takeover_from_a_node_that_never_confirms_waits_for_it_only_a_bounded_time()
    {
        await using var four = await NodeAsync("node-4", takeoverConfirmation: "00:00:00.5");
        await using var redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(Redis);
        var heard = await HauntAsync(redis, "abandoned");

        var started = System.Diagnostics.Stopwatch.StartNew();
        using var device = await four.ConnectAsync("abandoned");
        var waited = started.Elapsed;
        using var close = await heard.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(("close", "abandoned"), (close.RootElement.Str("type"), close.RootElement.Str("device")));
        Assert.True(waited >= TimeSpan.FromSeconds(0.45), $"the connect waited {waited} for a confirmation bounded at 0.5 s");
        Assert.Equal(HttpStatusCode.Accepted, (await _one.Api.PostTextAsync("api/devices/abandoned/messages", "here")).StatusCode);
        Assert.Equal("here", await device.ReceiveTextAsync());
    }

    [Fact]
    public async Task Api_disconnect_works_from_any_node()
    {
        using var device = await _one.ConnectAsync("kick-far");
        Assert.Equal(HttpStatusCode.NoContent, (await _two.Api.DeleteAsync("api/devices/kick-far/connection")).StatusCode);
        Assert.Equal((4001, "disconnected"), await device.ReceiveCloseAsync());
        // Presence across nodes settles within milliseconds of the close.
        await ApiExtensions.EventuallyAsync(async () => (await _two.Api.DeleteAsync("api/devices/kick-far/connection")).StatusCode == HttpStatusCode.NotFound, "presence gone");
    }

    [Fact]
    public async Task Queued_messages_are_delivered_when_the_device_connects_to_another_node()
    {
        for (var i = 0; i < 5; i++) Assert.Equal("queued", (await (await _one.Api.PostTextAsync("api/devices/wanderer/messages?ttl=60", $"q{i}")).JsonAsync()).Str("status"));
        Assert.Equal(5, (await _two.Api.GetJsonAsync("api/devices/wanderer")).GetProperty("queued").GetInt32());
        using var device = await _two.ConnectEnvelopeAsync("wanderer");
        for (var i = 0; i < 5; i++)
        {
            var m = await device.ReceiveJsonAsync();
            Assert.Equal($"q{i}", m.Str("data"));
            await device.SendJsonAsync(new { type = "ack", id = m.Str("id") });
        }
        await ApiExtensions.EventuallyAsync(async () => (await _one.Api.GetJsonAsync("api/devices/wanderer")).GetProperty("queued").GetInt32() == 0, "acks shared");
    }

    [Fact]
    public async Task An_rpc_posted_to_one_node_is_answered_by_a_device_on_the_other()
    {
        using var device = await _one.ConnectEnvelopeAsync("rpc-far");
        var serving = Task.Run(async () =>
        {
            var rpc = await device.ReceiveJsonAsync();
            await device.SendJsonAsync(new { type = "reply", id = rpc.Str("id"), data = new { got = rpc.GetProperty("data").GetString(), on = "node-1" } });
        });
        using var response = await _two.Api.PostTextAsync("api/devices/rpc-far/rpc?timeout=5", "status?");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("{\"got\":\"status?\",\"on\":\"node-1\"}", await response.Content.ReadAsStringAsync());
        await serving;

        using var raw = await _one.ConnectAsync("rpc-raw-far");
        Assert.Equal(HttpStatusCode.Conflict, (await _two.Api.PostTextAsync("api/devices/rpc-raw-far/rpc", "x")).StatusCode);
        using var silent = await _one.ConnectEnvelopeAsync("rpc-silent");
        Assert.Equal(HttpStatusCode.GatewayTimeout, (await _two.Api.PostTextAsync("api/devices/rpc-silent/rpc?timeout=0.5", "x")).StatusCode);
    }

    [Fact]
    public async Task Revocation_on_one_node_holds_on_every_node()
    {
        var token = _one.Token("revoked-far");
        using var device = new ClientWebSocket();
        device.Options.SetRequestHeader("Authorization", "Bearer " + token);
        await device.ConnectAsync(_one.WsUri("ws?deviceId=revoked-far"), new CancellationTokenSource(Timeouts.Default).Token);
        Assert.Equal(HttpStatusCode.NoContent, (await _two.Api.PostAsync("api/devices/revoked-far/revoke-tokens", null)).StatusCode);
        Assert.Equal((1008, "token_revoked"), await device.ReceiveCloseAsync());
        using var again = new ClientWebSocket();
        again.Options.CollectHttpResponseDetails = true;
        again.Options.SetRequestHeader("Authorization", "Bearer " + token);
        await Assert.ThrowsAsync<WebSocketException>(() => again.ConnectAsync(_two.WsUri("ws?deviceId=revoked-far"), new CancellationTokenSource(Timeouts.Default).Token));
        Assert.Equal(HttpStatusCode.Unauthorized, again.HttpStatusCode);
    }

    [Fact]
    public async Task The_event_stream_on_any_node_shows_every_node_s_events_and_resumes_on_another_node()
    {
        long lastSeen;
        await using (var sse = await SseClient.OpenAsync(_two.Api, "api/events?device=ev-far"))
        {
            using var device = await _one.ConnectAsync("ev-far");
            var connected = await sse.NextAsync();
            Assert.Equal(("connected", "node-1"), (connected.Event, connected.Data.Str("node")));
            await device.SendTextAsync("hello from node 1");
            var message = await sse.NextAsync();
            Assert.Equal("hello from node 1", message.Data.Str("data"));
            Assert.True(message.Id > connected.Id);
            lastSeen = message.Id;
            await device.SendTextAsync("missed 1");
            await device.SendTextAsync("missed 2");
            await device.CloseCleanlyAsync();
        }
        // Resume on the other node with Last-Event-ID: the missed events come from the shared log, in order.
        await using var resumed = await SseClient.OpenAsync(_one.Api, "api/events?device=ev-far", lastSeen);
        Assert.Equal("missed 1", (await resumed.NextAsync()).Data.Str("data"));
        Assert.Equal("missed 2", (await resumed.NextAsync()).Data.Str("data"));
        Assert.Equal("disconnected", (await resumed.NextAsync()).Event);
    }
}

public sealed class ClusterWebhookTests
{
    [Fact]
    public async Task Each_event_is_posted_once_for_the_whole_cluster()
    {
        var received = new System.Collections.Concurrent.ConcurrentQueue<JsonElement>();
        var builder = Microsoft.AspNetCore.Builder.WebApplication.CreateSlimBuilder();
        Microsoft.AspNetCore.Hosting.HostingAbstractionsWebHostBuilderExtensions.UseUrls(builder.WebHost, "http://127.0.0.1:0");
        await using var receiver = builder.Build();
        Microsoft.AspNetCore.Builder.EndpointRouteBuilderExtensions.MapPost(receiver, "/hook", async (Microsoft.AspNetCore.Http.HttpRequest request) =>
        {
            using var doc = await JsonDocument.ParseAsync(request.Body);
            foreach (var e in doc.RootElement.EnumerateArray()) received.Enqueue(e.Clone());
            return Microsoft.AspNetCore.Http.Results.Ok();
        });
        await receiver.StartAsync();
        var prefix = $"hooks-{Guid.NewGuid():N}:";
        Dictionary<string, string> Config(string node)
        {
            var c = ClusterTests.Settings(RedisServer.Shared.Configuration, prefix, node);
            c["DeviceGate:Webhooks:Url"] = receiver.Urls.First() + "/hook";
            c["DeviceGate:Webhooks:Secret"] = "cluster-webhook-secret";
            return c;
        }
        await using var one = await TestGateway.StartAsync(Config("node-1"));
        await using var two = await TestGateway.StartAsync(Config("node-2"));
        using (var a = await one.ConnectAsync("hook-a")) await a.CloseCleanlyAsync();
        using (var b = await two.ConnectAsync("hook-b")) await b.CloseCleanlyAsync();
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(received.Count(e => e.Str("type") == "disconnected") >= 2), "both disconnects posted");
        // Give a duplicate (if any) the time to arrive, then count: each event exactly once.
        using (var c = await one.ConnectAsync("hook-c")) await c.CloseCleanlyAsync();
        await ApiExtensions.EventuallyAsync(() => Task.FromResult(received.Any(e => e.Str("device") == "hook-c" && e.Str("type") == "disconnected")), "marker posted");
        var seqs = received.Select(e => e.GetProperty("seq").GetInt64()).ToList();
        Assert.Equal(seqs.Count, seqs.Distinct().Count());
        Assert.Equal(6, received.Count(e => e.Str("type") is "connected" or "disconnected"));
        await receiver.StopAsync();
    }
}
