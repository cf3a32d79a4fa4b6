using System.Net;
using System.Text;
using DeviceGate.Tests.Infrastructure;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Packets;
using MQTTnet.Protocol;

namespace DeviceGate.Tests.Functional;

/// <summary>MQTT devices on the same gateway (issue 18): MQTTnet's client and Debian's mosquitto clients against the real server.</summary>
public sealed class MqttTests : IAsyncLifetime
{
    private readonly int _port = MqttDevice.FreePort();
    private TestGateway _gw = null!;

    public async Task InitializeAsync() => _gw = await TestGateway.StartAsync(new Dictionary<string, string>
    {
        ["DeviceGate:Mqtt:Enabled"] = "true",
        ["DeviceGate:Mqtt:TcpPort"] = _port.ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["DeviceGate:Delivery:AckTimeout"] = "00:00:01",
    });

    public async Task DisposeAsync() => await _gw.DisposeAsync();

    private async Task<JsonElementStatus> StatusAsync(string id) => new((await _gw.Api.GetJsonAsync($"api/messages/{id}")).Str("status"));

    private sealed record JsonElementStatus(string Status);

    private async Task<string> SendAsync(string device, HttpContent content, int ttl = 0)
    {
        using var response = await _gw.Api.PostAsync($"api/devices/{device}/messages" + (ttl > 0 ? $"?ttl={ttl}" : ""), content);
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return (await response.JsonAsync()).Str("id");
    }

    public static TheoryData<string, MqttProtocolVersion> Transports => new()
    {
        { "tcp", MqttProtocolVersion.V311 },
        { "tcp", MqttProtocolVersion.V500 },
        { "websocket", MqttProtocolVersion.V311 },
        { "websocket", MqttProtocolVersion.V500 },
    };

    private MqttClientOptionsBuilder Options(string transport, string id, string? token, MqttProtocolVersion version) =>
        transport == "tcp" ? MqttDevice.Tcp(_port, id, token, version) : MqttDevice.WebSocket(_gw.BaseUri, id, token, version);

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task A_device_with_a_token_gets_what_the_api_sends_as_exact_bytes_and_its_puback_acks_it(string transport, MqttProtocolVersion version)
    {
        var id = $"mq-{transport}-{(int)version}";
        await using var device = await MqttDevice.ConnectAsync(Options(transport, id, _gw.Token(id), version));
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await device.SubscribeAsync($"devices/{id}/messages"));

        var textId = await SendAsync(id, new StringContent("hello mqtt", Encoding.UTF8, "text/plain"), ttl: 60);
        var text = await device.ReceiveAsync();
        Assert.Equal(($"devices/{id}/messages", "hello mqtt"), (text.ApplicationMessage.Topic, text.ApplicationMessage.ConvertPayloadToString()));
        var binaryId = await SendAsync(id, new ByteArrayContent([0, 1, 254, 255]) { Headers = { ContentType = new("application/octet-stream") } }, ttl: 60);
        var binary = await device.ReceiveAsync();
        Assert.Equal(new byte[] { 0, 1, 254, 255 }, System.Buffers.BuffersExtensions.ToArray(binary.ApplicationMessage.Payload));
        if (version == MqttProtocolVersion.V500)
        {
            Assert.Equal((textId, "server"), (text.ApplicationMessage.UserProperties.Single(p => p.Name == "id").ReadValueAsString(),
                text.ApplicationMessage.UserProperties.Single(p => p.Name == "from").ReadValueAsString()));
            Assert.Equal(MqttPayloadFormatIndicator.CharacterData, text.ApplicationMessage.PayloadFormatIndicator);
            Assert.Equal("application/octet-stream", binary.ApplicationMessage.ContentType);
        }
        await ApiExtensions.EventuallyAsync(async () => (await StatusAsync(textId)).Status == "acked" && (await StatusAsync(binaryId)).Status == "acked", "both acked by PUBACK");

        var online = await _gw.Api.GetJsonAsync($"api/devices/{id}");
        Assert.True(online.GetProperty("online").GetBoolean());
        Assert.Equal(("mqtt", version == MqttProtocolVersion.V500 ? "5" : "3.1.1"), (online.Str("transport"), online.Str("protocol")));
    }

    [Fact]
    public async Task Rpc_over_mqtt_5_uses_the_response_topic_and_correlation_data_and_an_error_property_is_a_502()
    {
        const string id = "mq-rpc5";
        await using var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id)));
        // Not listening for rpcs yet: like a raw device, 409.
        using (var early = await _gw.Api.PostTextAsync($"api/devices/{id}/rpc?timeout=5", "{}")) Assert.Equal(HttpStatusCode.Conflict, early.StatusCode);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await device.SubscribeAsync($"devices/{id}/rpc"));

        var call = _gw.Api.PostBytesAsync($"api/devices/{id}/rpc?timeout=10", "{\"cmd\":\"status\"}"u8.ToArray(), "application/json");
        var request = (await device.ReceiveAsync()).ApplicationMessage;
        Assert.Equal(($"devices/{id}/rpc", $"devices/{id}/rpc/reply", "{\"cmd\":\"status\"}"), (request.Topic, request.ResponseTopic, request.ConvertPayloadToString()));
        await device.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(request.ResponseTopic).WithCorrelationData(request.CorrelationData)
            .WithPayload("{\"ok\":true}").WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        using (var response = await call)
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.True((await response.JsonAsync()).GetProperty("ok").GetBoolean());
        }

        var failing = _gw.Api.PostTextAsync($"api/devices/{id}/rpc?timeout=10", "go");
        var second = (await device.ReceiveAsync()).ApplicationMessage;
        await device.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(second.ResponseTopic).WithCorrelationData(second.CorrelationData)
            .WithUserProperty("error", "busy"u8.ToArray().AsMemory()).WithPayload("motor running").Build());
        using (var response = await failing)
        {
            Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
            var problem = await response.JsonAsync();
            Assert.Equal(("busy", "motor running"), (problem.Str("code"), problem.Str("message")));
        }
    }

    [Fact]
    public async Task Rpc_over_mqtt_311_wraps_the_id_in_the_payload_both_ways()
    {
        const string id = "mq-rpc311";
        await using var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id), MqttProtocolVersion.V311));
        await device.SubscribeAsync($"devices/{id}/rpc");
        var call = _gw.Api.PostBytesAsync($"api/devices/{id}/rpc?timeout=10", "{\"cmd\":\"status\"}"u8.ToArray(), "application/json");
        var request = System.Text.Json.JsonDocument.Parse((await device.ReceiveAsync()).ApplicationMessage.ConvertPayloadToString()).RootElement;
        Assert.Equal("status", request.GetProperty("data").Str("cmd"));
        var rpcId = request.Str("id");
        await device.PublishAsync($"devices/{id}/rpc/reply", System.Text.Json.JsonSerializer.Serialize(new { id = rpcId, data = new { temp = 21 } }));
        using (var response = await call)
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal(21, (await response.JsonAsync()).GetProperty("temp").GetInt32());
        }
        var failing = _gw.Api.PostTextAsync($"api/devices/{id}/rpc?timeout=10", "go");
        var second = System.Text.Json.JsonDocument.Parse((await device.ReceiveAsync()).ApplicationMessage.ConvertPayloadToString()).RootElement;
        await device.PublishAsync($"devices/{id}/rpc/reply", System.Text.Json.JsonSerializer.Serialize(new { id = second.Str("id"), error = new { code = "busy", message = "motor running" } }));
        using var failed = await failing;
        Assert.Equal(HttpStatusCode.BadGateway, failed.StatusCode);
        Assert.Equal("busy", (await failed.JsonAsync()).Str("code"));
    }

    [Fact]
    public async Task Revoking_the_devices_tokens_closes_its_mqtt_connection_and_keeps_it_out()
    {
        const string id = "mq-revoked";
        var token = _gw.Token(id);
        await using var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, token));
        using (var revoke = await _gw.Api.PostAsync($"api/devices/{id}/revoke-tokens", null)) Assert.True(revoke.IsSuccessStatusCode, $"{(int)revoke.StatusCode}");
        var gone = await device.Disconnected.WaitAsync(Timeouts.Default);
        Assert.Equal(MqttClientDisconnectReason.NotAuthorized, gone.Reason);
        var (again, result) = await MqttDevice.TryConnectAsync(MqttDevice.Tcp(_port, id, token));
        await again.DisposeAsync();
        Assert.Equal(MqttClientConnectResultCode.NotAuthorized, result);
    }

    [Theory]
    [InlineData(MqttProtocolVersion.V311)]
    [InlineData(MqttProtocolVersion.V500)]
    public async Task Connects_without_a_valid_token_for_the_client_id_are_refused_not_authorized(MqttProtocolVersion version)
    {
        var refusals = new (string Id, string? Token)[] { ("mq-no-token", null), ("mq-wrong", _gw.Token("someone-else")), ("mq-bad", "not.a.token") };
        foreach (var (id, token) in refusals)
        {
            var (device, result) = await MqttDevice.TryConnectAsync(MqttDevice.Tcp(_port, id, token, version));
            await device.DisposeAsync();
            // 3.1.1's CONNACK code 5 and MQTT 5's 0x87 are both "not authorized".
            Assert.Equal(MqttClientConnectResultCode.NotAuthorized, result);
        }
        var (server, code) = await MqttDevice.TryConnectAsync(MqttDevice.Tcp(_port, "server", _gw.Token("server"), version));
        await server.DisposeAsync();
        Assert.Equal(MqttClientConnectResultCode.ClientIdentifierNotValid, code);
    }

    [Fact]
    public async Task A_message_without_puback_is_sent_again_with_dup_after_the_ack_timeout_and_after_a_reconnect()
    {
        const string id = "mq-noack";
        var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id)));
        device.Acknowledge = false;
        await device.SubscribeAsync($"devices/{id}/messages");
        var messageId = await SendAsync(id, new StringContent("again"), ttl: 60);
        var first = await device.ReceiveAsync();
        Assert.False(first.ApplicationMessage.Dup);
        var second = await device.ReceiveAsync();
        Assert.Equal(("again", true), (second.ApplicationMessage.ConvertPayloadToString(), second.ApplicationMessage.Dup));
        Assert.Equal("sent", (await StatusAsync(messageId)).Status);
        await device.DisposeAsync();

        await using var again = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id)));
        await again.SubscribeAsync($"devices/{id}/messages");
        var redelivered = await again.ReceiveAsync();
        Assert.Equal("again", redelivered.ApplicationMessage.ConvertPayloadToString());
        await ApiExtensions.EventuallyAsync(async () => (await StatusAsync(messageId)).Status == "acked", "acked after the reconnect");
    }

    [Fact]
    public async Task Stored_messages_wait_until_the_device_is_connected_and_subscribed_and_qos0_is_at_most_once()
    {
        const string id = "mq-wait";
        await using (var first = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id)))) { } // known to the gateway
        var queued = await SendAsync(id, new StringContent("waited"), ttl: 60);
        await using var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id)));
        Assert.True((await _gw.Api.GetJsonAsync($"api/devices/{id}")).GetProperty("online").GetBoolean());
        // Connected, not subscribed: the lane has not started, so nothing was written.
        Assert.Equal("queued", (await StatusAsync(queued)).Status);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS0, await device.SubscribeAsync($"devices/{id}/messages", MqttQualityOfServiceLevel.AtMostOnce));
        var m = await device.ReceiveAsync();
        Assert.Equal(("waited", MqttQualityOfServiceLevel.AtMostOnce), (m.ApplicationMessage.ConvertPayloadToString(), m.ApplicationMessage.QualityOfServiceLevel));
        // QoS 0 is at most once: written is final.
        await ApiExtensions.EventuallyAsync(async () => (await StatusAsync(queued)).Status == "sent", "sent once written");
    }

    [Fact]
    public async Task What_reaches_an_mqtt_5_device_carries_its_subscription_identifier_and_follows_its_subscriptions()
    {
        // The gateway puts messages into the device's MQTTnet session itself (not through MQTTnet's routing), so it
        // applies the subscription as MQTTnet would: granted QoS, MQTT 5 subscription identifier, unsubscribe.
        const string id = "mq-subid";
        await using var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id)));
        var subscribed = await device.Client.SubscribeAsync(new MqttClientSubscribeOptionsBuilder()
            .WithTopicFilter($"devices/{id}/messages", MqttQualityOfServiceLevel.AtLeastOnce).WithSubscriptionIdentifier(7).Build());
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, subscribed.Items.Single().ResultCode);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS0, await device.SubscribeAsync($"devices/{id}/rpc", MqttQualityOfServiceLevel.AtMostOnce));

        await SendAsync(id, new StringContent("tagged"));
        var tagged = (await device.ReceiveAsync()).ApplicationMessage;
        Assert.Equal(("tagged", MqttQualityOfServiceLevel.AtLeastOnce), (tagged.ConvertPayloadToString(), tagged.QualityOfServiceLevel));
        Assert.Equal([7u], tagged.SubscriptionIdentifiers);

        var call = _gw.Api.PostBytesAsync($"api/devices/{id}/rpc?timeout=10", "{}"u8.ToArray(), "application/json");
        var request = (await device.ReceiveAsync()).ApplicationMessage;
        Assert.Equal(($"devices/{id}/rpc", MqttQualityOfServiceLevel.AtMostOnce), (request.Topic, request.QualityOfServiceLevel));
        Assert.True(request.SubscriptionIdentifiers is null or { Count: 0 }, "the rpc subscription had no identifier");
        await device.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic(request.ResponseTopic).WithCorrelationData(request.CorrelationData).WithPayload("1").Build());
        using (var answered = await call) Assert.Equal(HttpStatusCode.OK, answered.StatusCode);

        // Unsubscribed from its messages: what is sent now is not published to it; subscribed again, the next is.
        await device.Client.UnsubscribeAsync(new MqttClientUnsubscribeOptionsBuilder().WithTopicFilter($"devices/{id}/messages").Build());
        await SendAsync(id, new StringContent("not subscribed"));
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await device.SubscribeAsync($"devices/{id}/messages"));
        await SendAsync(id, new StringContent("subscribed again"));
        var next = (await device.ReceiveAsync()).ApplicationMessage;
        Assert.Equal("subscribed again", next.ConvertPayloadToString());
        Assert.True(next.SubscriptionIdentifiers is null or { Count: 0 }, "the new subscription has no identifier");
    }

    [Fact]
    public async Task Publishes_to_events_become_message_events_with_the_topic_from_mosquitto_pub()
    {
        const string id = "mq-events";
        await using var sse = await SseClient.OpenAsync(_gw.Api, $"api/events?types=message&device={id}");
        var port = _port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var (code, _, error) = await Mosquitto.RunAsync("mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-i", id, "-u", "device", "-P", _gw.Token(id),
            "-V", "mqttv311", "-q", "1", "-t", $"devices/{id}/events/temperature", "-m", "21.5");
        Assert.True(code == 0, error);
        var e = await sse.NextAsync();
        Assert.Equal(("message", "/temperature", "21.5"), (e.Event, e.Data.Str("topic"), e.Data.Str("data")));
        (code, _, error) = await Mosquitto.RunAsync("mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-i", id, "-u", "device", "-P", _gw.Token(id),
            "-V", "mqttv5", "-q", "1", "-t", $"devices/{id}/events", "-m", "{\"level\":3}");
        Assert.True(code == 0, error);
        e = await sse.NextAsync();
        Assert.Equal("", e.Data.Str("topic"));
        Assert.Equal("{\"level\":3}", e.Data.Str("data"));
    }

    [Fact]
    public async Task A_will_becomes_a_message_event_marked_will_when_the_device_drops_and_not_when_it_disconnects()
    {
        const string id = "mq-will";
        await using var sse = await SseClient.OpenAsync(_gw.Api, $"api/events?types=connected,disconnected,message&device={id}");
        var info = new System.Diagnostics.ProcessStartInfo("mosquitto_sub") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-h", "127.0.0.1", "-p", _port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-i", id, "-u", "device", "-P", _gw.Token(id),
            "-t", $"devices/{id}/messages", "--will-topic", $"devices/{id}/events/status", "--will-payload", "offline", "--will-qos", "1" })
        {
            info.ArgumentList.Add(a);
        }
        using (var sub = System.Diagnostics.Process.Start(info)!)
        {
            Assert.Equal("connected", (await sse.NextAsync()).Event);
            // Dropped, not disconnected: the TCP connection ends without a DISCONNECT packet.
            sub.Kill();
            await sub.WaitForExitAsync();
        }
        var will = await sse.NextWhereAsync(e => e.Event == "message");
        Assert.Equal(("/status", "offline", true), (will.Data.Str("topic"), will.Data.Str("data"), will.Data.GetProperty("will").GetBoolean()));

        // A clean DISCONNECT sends no will; an ordinary publish is no will either.
        var clean = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id)).WithWillTopic($"devices/{id}/events/status").WithWillPayload("offline"));
        await clean.PublishAsync($"devices/{id}/events/status", "online");
        var ordinary = await sse.NextWhereAsync(e => e.Event == "message");
        Assert.False(ordinary.Data.TryGetProperty("will", out _));
        await clean.DisposeAsync();
        await sse.NextWhereAsync(e => e.Event == "disconnected");
        using (var ws = await _gw.ConnectAsync(id)) await ws.CloseCleanlyAsync();
        var next = await sse.NextWhereAsync(e => e.Event != "connected");
        Assert.Equal("disconnected", next.Event);
    }

    [Theory]
    [InlineData("3.1.1")]
    [InlineData("5")]
    public async Task A_paho_device_reports_its_state_and_receives_a_message(string version)
    {
        var id = "mq-paho-" + version.Replace(".", "");
        var info = new System.Diagnostics.ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { Path.Combine(Repository.Root, "tests", "DeviceGate.Tests", "Functional", "clients", "paho_device.py"),
            _port.ToString(System.Globalization.CultureInfo.InvariantCulture), id, _gw.Token(id), version })
        {
            info.ArgumentList.Add(a);
        }
        using var paho = System.Diagnostics.Process.Start(info)!;
        try
        {
            using var cts = new CancellationTokenSource(Timeouts.Default);
            Assert.Equal("subscribed", await paho.StandardOutput.ReadLineAsync(cts.Token));
            // Its reported state arrives (a merge patch published to devices/{id}/state/reported).
            await ApiExtensions.EventuallyAsync(async () => (await _gw.Api.GetJsonAsync($"api/devices/{id}/state")).GetProperty("reportedVersion").GetInt32() == 1, "reported v1");
            var state = await _gw.Api.GetJsonAsync($"api/devices/{id}/state");
            Assert.Equal(("1.4", 80), (state.GetProperty("reported").Str("fw"), state.GetProperty("reported").GetProperty("battery").GetProperty("level").GetInt32()));
            await SendAsync(id, new StringContent("hello paho"));
            Assert.Equal("hello paho", await paho.StandardOutput.ReadLineAsync(cts.Token));
            await paho.WaitForExitAsync(cts.Token);
            Assert.True(paho.ExitCode == 0, await paho.StandardError.ReadToEndAsync());
        }
        finally
        {
            if (!paho.HasExited) paho.Kill();
        }
    }

    private async Task PatchDesiredAsync(string id, string patch)
    {
        using var request = new HttpRequestMessage(HttpMethod.Patch, $"api/devices/{id}/state/desired")
        {
            Content = new StringContent(patch, Encoding.UTF8, "application/merge-patch+json"),
        };
        using var response = await _gw.Api.SendAsync(request);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task Desired_state_reaches_the_state_topic_latest_first_and_its_puback_is_the_devices_acked_version()
    {
        const string id = "mq-state";
        await PatchDesiredAsync(id, """{"fw":"1.4"}""");
        await using var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id)));
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await device.SubscribeAsync($"devices/{id}/state/desired"));
        await device.SubscribeAsync($"devices/{id}/messages");
        var first = (await device.ReceiveAsync()).ApplicationMessage;
        Assert.Equal($"devices/{id}/state/desired", first.Topic);
        var doc = System.Text.Json.JsonDocument.Parse(first.ConvertPayloadToString()).RootElement;
        Assert.Equal((1, "1.4", "1.4"), (doc.GetProperty("version").GetInt32(), doc.GetProperty("desired").Str("fw"), doc.GetProperty("delta").Str("fw")));
        Assert.False(doc.TryGetProperty("type", out _));
        await ApiExtensions.EventuallyAsync(async () => (await _gw.Api.GetJsonAsync($"api/devices/{id}/state")).GetProperty("ackedVersion").GetInt32() == 1, "acked v1 by PUBACK");

        // Live: the next version arrives while connected; the reported state comes back on its topic.
        await PatchDesiredAsync(id, """{"brightness":70}""");
        var second = System.Text.Json.JsonDocument.Parse((await device.ReceiveAsync()).ApplicationMessage.ConvertPayloadToString()).RootElement;
        Assert.Equal((2, 70), (second.GetProperty("version").GetInt32(), second.GetProperty("desired").GetProperty("brightness").GetInt32()));
        await device.PublishAsync($"devices/{id}/state/reported", """{"fw":"1.4","brightness":70}""");
        await ApiExtensions.EventuallyAsync(async () =>
        {
            var state = await _gw.Api.GetJsonAsync($"api/devices/{id}/state");
            return state.GetProperty("ackedVersion").GetInt32() == 2 && state.GetProperty("delta").EnumerateObject().Any() == false;
        }, "acked v2 and no delta left");
    }

    [Fact]
    public async Task A_state_subscription_after_the_messages_one_still_gets_the_desired_state()
    {
        const string id = "mq-state-late";
        await PatchDesiredAsync(id, """{"mode":"eco"}""");
        await using var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id), MqttProtocolVersion.V311));
        await device.SubscribeAsync($"devices/{id}/messages");
        await SendAsync(id, new StringContent("first a message"));
        Assert.Equal("first a message", (await device.ReceiveAsync()).ApplicationMessage.ConvertPayloadToString());
        await device.SubscribeAsync($"devices/{id}/state/desired");
        var state = (await device.ReceiveAsync()).ApplicationMessage;
        Assert.Equal(($"devices/{id}/state/desired", "eco"), (state.Topic, System.Text.Json.JsonDocument.Parse(state.ConvertPayloadToString()).RootElement.GetProperty("desired").Str("mode")));
    }

    [Fact]
    public async Task A_payload_that_claims_to_be_text_but_is_not_utf8_is_an_event_with_dataBase64()
    {
        const string id = "mq-liar";
        await using var sse = await SseClient.OpenAsync(_gw.Api, $"api/events?types=message&device={id}");
        await using var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id)));
        var result = await device.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic($"devices/{id}/events")
            .WithPayload(new byte[] { 0xff, 0xfe, 0x00, 0x41 }).WithPayloadFormatIndicator(MqttPayloadFormatIndicator.CharacterData)
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
        Assert.Equal(MqttClientPublishReasonCode.Success, result.ReasonCode);
        var e = await sse.NextAsync();
        Assert.Equal(new byte[] { 0xff, 0xfe, 0x00, 0x41 }, Convert.FromBase64String(e.Data.Str("dataBase64")));
        Assert.True(device.Client.IsConnected);
    }

    [Fact]
    public async Task Mosquitto_sub_receives_a_message_sent_with_the_api()
    {
        const string id = "mq-sub";
        await using (var known = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id)))) { }
        await SendAsync(id, new StringContent("from curl"), ttl: 60);
        var (code, output, error) = await Mosquitto.RunAsync("mosquitto_sub", "-h", "127.0.0.1", "-p", _port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "-i", id, "-u", "device", "-P", _gw.Token(id), "-q", "1", "-t", $"devices/{id}/messages", "-C", "1", "-W", "15");
        Assert.True(code == 0, error);
        Assert.Equal("from curl", output.TrimEnd('\n'));
    }

    [Fact]
    public async Task Devices_reach_each_other_across_transports_and_groups_are_joined_by_subscription()
    {
        await using var mqtt = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, "mq-a", _gw.Token("mq-a")));
        await mqtt.SubscribeAsync("devices/mq-a/messages");
        using var ws = await _gw.ConnectEnvelopeAsync("ws-b");

        // MQTT → WebSocket envelope device.
        Assert.Equal(MqttClientPublishReasonCode.Success, (await mqtt.PublishAsync("devices/ws-b/messages", "to ws")).ReasonCode);
        var atWs = await ws.ReceiveJsonAsync();
        Assert.Equal(("mq-a", "to ws"), (atWs.Str("from"), atWs.Str("data")));
        // WebSocket → MQTT.
        await ws.SendJsonAsync(new { type = "send", to = "mq-a", data = "to mqtt" });
        var atMqtt = await mqtt.ReceiveAsync();
        Assert.Equal("to mqtt", atMqtt.ApplicationMessage.ConvertPayloadToString());
        Assert.Equal("ws-b", atMqtt.ApplicationMessage.UserProperties.Single(p => p.Name == "from").ReadValueAsString());

        // Subscribing to a group's topic joins it; the WebSocket device publishes to the group.
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await mqtt.SubscribeAsync("groups/mq-room/messages"));
        var members = await _gw.Api.GetJsonAsync("api/groups/mq-room");
        Assert.Contains("mq-a", members.ToString());
        await ws.SendJsonAsync(new { type = "join", group = "mq-room" });
        await ws.SendJsonAsync(new { type = "publish", group = "mq-room", data = "to the room" });
        var grouped = await mqtt.ReceiveAsync();
        Assert.Equal(("to the room", "mq-room"), (grouped.ApplicationMessage.ConvertPayloadToString(), grouped.ApplicationMessage.UserProperties.Single(p => p.Name == "group").ReadValueAsString()));
        // And the MQTT device publishes to it (it does not get its own).
        await mqtt.PublishAsync("groups/mq-room/messages", "from mqtt to the room");
        var fromRoom = await ws.ReceiveJsonAsync();
        Assert.Equal(("mq-a", "mq-room", "from mqtt to the room"), (fromRoom.Str("from"), fromRoom.Str("group"), fromRoom.Str("data")));
        await mqtt.Client.UnsubscribeAsync("groups/mq-room/messages");
        await ApiExtensions.EventuallyAsync(async () => !(await _gw.Api.GetJsonAsync("api/groups/mq-room")).ToString().Contains("mq-a"), "unsubscribing leaves the group");
    }

    [Fact]
    public async Task Another_devices_topics_wildcards_and_unknown_topics_are_refused()
    {
        await using var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, "mq-nosy", _gw.Token("mq-nosy")));
        foreach (var topic in new[] { "devices/other/messages", "#", "devices/+/messages", "$SYS/#", "devices/mq-nosy/#" })
        {
            Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await device.SubscribeAsync(topic));
        }
        var refused = await device.PublishAsync("somewhere/else", "x");
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, refused.ReasonCode);
        Assert.True(device.Client.IsConnected);

        // MQTT 3.1.1 has no negative PUBACK: the connection is closed.
        var old = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, "mq-nosy-311", _gw.Token("mq-nosy-311"), MqttProtocolVersion.V311));
        await using (old)
        {
            try
            {
                await old.PublishAsync("somewhere/else", "x", MqttQualityOfServiceLevel.AtMostOnce);
            }
            catch (MQTTnet.Exceptions.MqttCommunicationException)
            {
                // The close may overtake the send.
            }
            await old.Disconnected.WaitAsync(Timeouts.Default);
        }
    }

    [Fact]
    public async Task A_publish_over_max_message_bytes_disconnects_the_device_with_packet_too_large()
    {
        await using var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, "mq-big", _gw.Token("mq-big")));
        var big = new string('x', 64 * 1024 + 1);
        try
        {
            await device.PublishAsync("devices/mq-big/events", big);
        }
        catch (MQTTnet.Exceptions.MqttCommunicationException)
        {
            // The disconnect may overtake the PUBACK the client waits for.
        }
        var gone = await device.Disconnected.WaitAsync(Timeouts.Default);
        Assert.Equal(MqttClientDisconnectReason.PacketTooLarge, gone.Reason);
        await ApiExtensions.EventuallyAsync(async () => !(await _gw.Api.GetJsonAsync("api/devices/mq-big")).GetProperty("online").GetBoolean(), "offline");
    }

    /// <summary>The bytes of an MQTT fixed header: the packet type byte and its remaining length as a variable byte integer.</summary>
    private static byte[] FixedHeader(byte type, int remaining)
    {
        var bytes = new List<byte> { type };
        do
        {
            var digit = (byte)(remaining % 128);
            remaining /= 128;
            bytes.Add(remaining > 0 ? (byte)(digit | 0x80) : digit);
        }
        while (remaining > 0);
        return bytes.ToArray();
    }

    private async Task<bool> ClosedAsync(System.Net.Sockets.NetworkStream stream)
    {
        var buffer = new byte[256];
        using var cts = new CancellationTokenSource(Timeouts.Default);
        try
        {
            while (await stream.ReadAsync(buffer, cts.Token) > 0)
            {
                // A DISCONNECT or CONNACK may come first; the close is what counts.
            }
            return true;
        }
        catch (IOException)
        {
            return true;
        }
    }

    [Fact]
    public async Task A_packet_that_announces_more_than_the_limit_is_refused_from_its_header_before_connect_and_after()
    {
        // Before CONNECT, unauthenticated: 200 MB announced, 5 bytes sent. MQTTnet would allocate the body and wait for it.
        using (var tcp = new System.Net.Sockets.TcpClient())
        {
            await tcp.ConnectAsync(IPAddress.Loopback, _port);
            var stream = tcp.GetStream();
            await stream.WriteAsync(FixedHeader(0x10, 200_000_000));
            Assert.True(await ClosedAsync(stream), "closed from the header alone");
        }
        // After CONNECT: a PUBLISH header announcing 100 MB closes the device's connection, and it leaves presence.
        await using var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, "mq-huge", _gw.Token("mq-huge")));
        var formatter = new MqttPacketFormatterAdapter(MqttProtocolVersion.V500, new MqttBufferWriter(4096, 65535));
        using (var tcp = new System.Net.Sockets.TcpClient())
        {
            await tcp.ConnectAsync(IPAddress.Loopback, _port);
            var stream = tcp.GetStream();
            var connect = formatter.Encode(new MqttConnectPacket { ClientId = "mq-huge", Username = "device", Password = Encoding.UTF8.GetBytes(_gw.Token("mq-huge")), KeepAlivePeriod = 60, CleanSession = true });
            await stream.WriteAsync(connect.Join().ToArray());
            await stream.WriteAsync(FixedHeader(0x30, 100_000_000));
            Assert.True(await ClosedAsync(stream), "closed from the PUBLISH header");
        }
        await ApiExtensions.EventuallyAsync(async () => !(await _gw.Api.GetJsonAsync("api/devices/mq-huge")).GetProperty("online").GetBoolean(), "offline");
        // The gateway goes on: a device connects and is reached.
        await using var next = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, "mq-after", _gw.Token("mq-after")));
        await next.SubscribeAsync("devices/mq-after/messages");
        await SendAsync("mq-after", new StringContent("still here", Encoding.UTF8, "text/plain"), ttl: 60);
        Assert.Equal("still here", (await next.ReceiveAsync()).ApplicationMessage.ConvertPayloadToString());
    }

    [Fact]
    public async Task An_mqtt_device_that_stops_reading_is_disconnected_as_a_slow_consumer_while_others_keep_receiving()
    {
        // What waits in MQTTnet's queue for the device counts against its send queue (50 messages / 256 KiB), as a
        // WebSocket's does: past it the device is disconnected, nothing is dropped from the queue unnoticed.
        const string id = "mq-slow";
        var formatter = new MqttPacketFormatterAdapter(MqttProtocolVersion.V311, new MqttBufferWriter(4096, 65535));
        using var tcp = new System.Net.Sockets.TcpClient { ReceiveBufferSize = 4096 };
        await tcp.ConnectAsync(IPAddress.Loopback, _port);
        var stream = tcp.GetStream();
        await stream.WriteAsync(formatter.Encode(new MqttConnectPacket { ClientId = id, Username = "device", Password = Encoding.UTF8.GetBytes(_gw.Token(id)), KeepAlivePeriod = 60, CleanSession = true }).Join().ToArray());
        await stream.WriteAsync(formatter.Encode(new MqttSubscribePacket { PacketIdentifier = 1, TopicFilters = [new MqttTopicFilter { Topic = $"devices/{id}/messages", QualityOfServiceLevel = MqttQualityOfServiceLevel.AtMostOnce }] }).Join().ToArray());
        var answers = new byte[9]; // CONNACK (4 bytes) and SUBACK (5): then this device reads nothing more
        await stream.ReadExactlyAsync(answers).AsTask().WaitAsync(Timeouts.Default);
        Assert.Equal((0x20, 0x90), (answers[0], answers[4]));
        await ApiExtensions.EventuallyAsync(async () => (await _gw.Api.GetJsonAsync($"api/devices/{id}")).GetProperty("online").GetBoolean(), "online");

        await using var fast = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, "mq-fast", _gw.Token("mq-fast")));
        await fast.SubscribeAsync("devices/mq-fast/messages");
        var payload = new byte[16 * 1024];
        var overflowed = false;
        for (var i = 0; i < 2000 && !overflowed; i++)
        {
            using var toSlow = await _gw.Api.PostAsync($"api/devices/{id}/messages", new ByteArrayContent(payload) { Headers = { ContentType = new("application/octet-stream") } });
            overflowed = toSlow.StatusCode != HttpStatusCode.Accepted;
            if (i % 100 == 0)
            {
                await SendAsync("mq-fast", new StringContent($"still here {i}"));
                Assert.Equal($"still here {i}", (await fast.ReceiveAsync()).ApplicationMessage.ConvertPayloadToString());
            }
        }
        Assert.True(overflowed, "the slow device's queue never overflowed");
        await ApiExtensions.EventuallyAsync(async () => !(await _gw.Api.GetJsonAsync($"api/devices/{id}")).GetProperty("online").GetBoolean(), "the slow device left presence");
        await SendAsync("mq-fast", new StringContent("after"));
        Assert.Equal("after", (await fast.ReceiveAsync()).ApplicationMessage.ConvertPayloadToString());
    }

    [Fact]
    public async Task A_subscribe_naming_more_groups_than_a_device_may_join_closes_the_connection_without_joining_any()
    {
        await using var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, "mq-greedy", _gw.Token("mq-greedy")));
        var many = new MqttClientSubscribeOptionsBuilder();
        for (var i = 0; i < 1000; i++) many.WithTopicFilter($"groups/g{i}/messages");
        try
        {
            await device.Client.SubscribeAsync(many.Build());
        }
        catch (Exception e) when (e is MQTTnet.Exceptions.MqttCommunicationException or OperationCanceledException)
        {
            // The close may overtake the SUBACK the client waits for.
        }
        var gone = await device.Disconnected.WaitAsync(Timeouts.Default);
        Assert.Equal((MqttClientDisconnectReason.NotAuthorized, "too_many_topics"), (gone.Reason, gone.ReasonString));
        Assert.Empty((await _gw.Api.GetJsonAsync("api/devices/mq-greedy")).GetProperty("groups").EnumerateArray());
    }

    [Fact]
    public async Task An_mqtt_device_over_its_rate_is_slowed_down_and_no_qos0_publish_is_lost()
    {
        var port = MqttDevice.FreePort();
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string>
        {
            ["DeviceGate:Mqtt:Enabled"] = "true",
            ["DeviceGate:Mqtt:TcpPort"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["DeviceGate:Limits:DeviceMessagesPerSecond"] = "20",
            ["DeviceGate:Limits:DeviceMessagesBurst"] = "5",
        });
        const string id = "mq-fast";
        await using var sse = await SseClient.OpenAsync(gw.Api, $"api/events?types=message&device={id}");
        await using var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(port, id, gw.Token(id)));
        for (var i = 0; i < 30; i++)
        {
            await device.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic($"devices/{id}/events").WithPayload($"m{i}")
                .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtMostOnce).Build());
        }
        var seen = new List<string>();
        while (seen.Count < 30) seen.Add((await sse.NextAsync()).Data.Str("data"));
        // QoS 0 has no negative answer: what is over the rate waits (the gateway stops reading), and arrives.
        Assert.Equal(Enumerable.Range(0, 30).Select(i => $"m{i}"), seen);
        Assert.True(device.Client.IsConnected);
    }

    [Fact]
    public async Task A_client_without_keep_alive_is_held_to_max_keep_alive_and_leaves_presence()
    {
        var port = MqttDevice.FreePort();
        await using var gw = await TestGateway.StartAsync(new Dictionary<string, string>
        {
            ["DeviceGate:Mqtt:Enabled"] = "true",
            ["DeviceGate:Mqtt:TcpPort"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["DeviceGate:Mqtt:MaxKeepAlive"] = "00:00:01",
        });
        // Keep-alive 0: it never pings, and MQTTnet alone would keep it forever.
        await using var silent = await MqttDevice.ConnectAsync(MqttDevice.Tcp(port, "mq-silent", gw.Token("mq-silent")).WithKeepAlivePeriod(TimeSpan.Zero));
        var gone = await silent.Disconnected.WaitAsync(Timeouts.Default);
        Assert.Equal(MqttClientDisconnectReason.KeepAliveTimeout, gone.Reason);
        await ApiExtensions.EventuallyAsync(async () => !(await gw.Api.GetJsonAsync("api/devices/mq-silent")).GetProperty("online").GetBoolean(), "left presence");
    }

    [Fact]
    public async Task A_311_session_with_clean_session_false_resumes_its_subscriptions_and_a_clean_one_forgets_them()
    {
        const string id = "mq-keep311";
        var kept = MqttDevice.Tcp(_port, id, _gw.Token(id), MqttProtocolVersion.V311).WithCleanSession(false);
        await using (var first = await MqttDevice.ConnectAsync(kept))
        {
            Assert.False(first.Connected.IsSessionPresent);
            await first.SubscribeAsync($"devices/{id}/messages");
            await first.SubscribeAsync($"devices/{id}/rpc", MqttQualityOfServiceLevel.AtMostOnce);
        }
        await using (var again = await MqttDevice.ConnectAsync(kept))
        {
            // No SUBSCRIBE this time: the session's subscriptions are there, with their QoS.
            Assert.True(again.Connected.IsSessionPresent);
            var messageId = await SendAsync(id, new StringContent("resumed", Encoding.UTF8, "text/plain"), ttl: 60);
            Assert.Equal("resumed", (await again.ReceiveAsync()).ApplicationMessage.ConvertPayloadToString());
            await ApiExtensions.EventuallyAsync(async () => (await StatusAsync(messageId)).Status == "acked", "acked: the subscription came back at QoS 1");
            var call = _gw.Api.PostBytesAsync($"api/devices/{id}/rpc?timeout=10", "{}"u8.ToArray(), "application/json");
            var request = await again.ReceiveAsync();
            Assert.Equal(($"devices/{id}/rpc", MqttQualityOfServiceLevel.AtMostOnce), (request.ApplicationMessage.Topic, request.ApplicationMessage.QualityOfServiceLevel));
            var rpcId = System.Text.Json.JsonDocument.Parse(request.ApplicationMessage.ConvertPayloadToString()).RootElement.Str("id");
            await again.PublishAsync($"devices/{id}/rpc/reply", System.Text.Json.JsonSerializer.Serialize(new { id = rpcId, data = 1 }));
            using var answered = await call;
            Assert.Equal(HttpStatusCode.OK, answered.StatusCode);
        }
        await using (var clean = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id), MqttProtocolVersion.V311)))
        {
            Assert.False(clean.Connected.IsSessionPresent);
            using var refused = await _gw.Api.PostBytesAsync($"api/devices/{id}/rpc?timeout=10", "{}"u8.ToArray(), "application/json");
            Assert.Equal(HttpStatusCode.Conflict, refused.StatusCode);
        }
        await using var afterClean = await MqttDevice.ConnectAsync(kept);
        Assert.False(afterClean.Connected.IsSessionPresent);
        using var stillRefused = await _gw.Api.PostBytesAsync($"api/devices/{id}/rpc?timeout=10", "{}"u8.ToArray(), "application/json");
        Assert.Equal(HttpStatusCode.Conflict, stillRefused.StatusCode);
    }

    [Fact]
    public async Task An_mqtt_5_session_expiry_is_capped_survives_a_restart_and_one_of_zero_resumes_once_without_keeping()
    {
        var data = TempFolder.Create();
        var port = MqttDevice.FreePort();
        var settings = new Dictionary<string, string>
        {
            ["DeviceGate:Mqtt:Enabled"] = "true",
            ["DeviceGate:Mqtt:TcpPort"] = port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["DeviceGate:Mqtt:MaxSessionExpiry"] = "01:00:00",
        };
        const string id = "mq-keep5";
        try
        {
            await using (var gw = await TestGateway.StartAsync(settings, data))
            {
                await using var first = await MqttDevice.ConnectAsync(MqttDevice.Tcp(port, id, gw.Token(id)).WithCleanStart(false).WithSessionExpiryInterval(uint.MaxValue));
                Assert.Equal(3600u, first.Connected.SessionExpiryInterval);
                await first.SubscribeAsync($"devices/{id}/messages");
                await first.SubscribeAsync($"devices/{id}/state/desired");
                await first.SubscribeAsync($"devices/{id}/rpc");
                await first.Client.UnsubscribeAsync(new MqttClientUnsubscribeOptionsBuilder().WithTopicFilter($"devices/{id}/rpc").Build());
            }
            await using (var gw = await TestGateway.StartAsync(settings, data))
            {
                using (var put = await gw.Api.PatchAsync($"api/devices/{id}/state/desired", new StringContent("{\"led\":\"on\"}", Encoding.UTF8, "application/merge-patch+json")))
                {
                    Assert.True(put.IsSuccessStatusCode, $"{(int)put.StatusCode}");
                }
                using (var sent = await gw.Api.PostAsync($"api/devices/{id}/messages?ttl=60", new StringContent("after restart", Encoding.UTF8, "text/plain")))
                {
                    Assert.Equal(HttpStatusCode.Accepted, sent.StatusCode);
                }
                // Clean start false with no expiry: this connection resumes the session and keeps nothing after it.
                await using (var resumed = await MqttDevice.ConnectAsync(MqttDevice.Tcp(port, id, gw.Token(id)).WithCleanStart(false)))
                {
                    Assert.True(resumed.Connected.IsSessionPresent);
                    var topics = new[] { (await resumed.ReceiveAsync()).ApplicationMessage.Topic, (await resumed.ReceiveAsync()).ApplicationMessage.Topic };
                    Assert.Equal([$"devices/{id}/messages", $"devices/{id}/state/desired"], topics.Order());
                    using var noRpc = await gw.Api.PostBytesAsync($"api/devices/{id}/rpc?timeout=10", "{}"u8.ToArray(), "application/json");
                    Assert.Equal(HttpStatusCode.Conflict, noRpc.StatusCode);
                }
                await using var gone = await MqttDevice.ConnectAsync(MqttDevice.Tcp(port, id, gw.Token(id)).WithCleanStart(false));
                Assert.False(gone.Connected.IsSessionPresent);
            }
        }
        finally
        {
            TempFolder.Delete(data);
        }
    }

    [Fact]
    public async Task A_device_that_disconnects_and_reconnects_at_once_keeps_working_every_time()
    {
        // Once in CI (under the whole suite's load) a device that disconnected and reconnected at once saw its new
        // connection dropped during SUBSCRIBE; the suspected cause is MQTTnet's own takeover racing with the ending
        // older connection, so the gateway now ends the older one first. This does not reproduce that race on
        // demand (it passed on the old code here too); it keeps the fast-reconnect path exercised.
        const string id = "mq-bounce";
        for (var i = 0; i < 20; i++)
        {
            // Each round leaves its message unacked (in flight), as the failing case did: the next round gets it again.
            await using var device = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id)));
            device.Acknowledge = false;
            Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await device.SubscribeAsync($"devices/{id}/messages"));
            if (i == 0) await SendAsync(id, new StringContent("in flight"), ttl: 60);
            Assert.Equal("in flight", (await device.ReceiveAsync()).ApplicationMessage.ConvertPayloadToString());
        }
    }

    [Fact]
    public async Task One_connection_per_device_across_transports_in_both_directions()
    {
        const string id = "mq-takeover";
        var mqtt = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id)));
        await using (mqtt)
        {
            using var ws = await _gw.ConnectAsync(id);
            var gone = await mqtt.Disconnected.WaitAsync(Timeouts.Default);
            Assert.Equal(MqttClientDisconnectReason.SessionTakenOver, gone.Reason);
            var asWebSocket = await _gw.Api.GetJsonAsync($"api/devices/{id}");
            Assert.Equal(("websocket", "raw"), (asWebSocket.Str("transport"), asWebSocket.Str("protocol")));

            await using var again = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id)));
            Assert.Equal((4000, "replaced"), await ws.ReceiveCloseAsync());
            var online = await _gw.Api.GetJsonAsync($"api/devices/{id}");
            Assert.True(online.GetProperty("online").GetBoolean());

            // A second MQTT connection of the same id takes over the first (one session in the registry).
            await using var third = await MqttDevice.ConnectAsync(MqttDevice.Tcp(_port, id, _gw.Token(id)));
            await again.Disconnected.WaitAsync(Timeouts.Default);
            await third.SubscribeAsync($"devices/{id}/messages");
            await SendAsync(id, new StringContent("to the newest"));
            Assert.Equal("to the newest", (await third.ReceiveAsync()).ApplicationMessage.ConvertPayloadToString());
        }
    }
}
