using System.Collections.Concurrent;
using System.Net;
using DeviceGate.Events;
using DeviceGate.Sessions;
using DeviceGate.Storage;
using Microsoft.Extensions.Options;
using MQTTnet;
using MQTTnet.AspNetCore;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace DeviceGate.Connections;

/// <summary>
/// MQTT devices on the same gateway (DeviceGate:Mqtt:Enabled): MQTTnet's server does the protocol (packets, QoS 1,
/// keep-alive) over TCP (its own listener on DeviceGate:Mqtt:TcpPort) and over WebSocket (<c>/mqtt</c>, accepted by
/// the framework); this class makes each MQTT client a DeviceSession like any other: CONNECT is the handshake (client
/// id = device id, password = device token), the registry, presence and takeover are shared with WebSocket devices,
/// and every PUBLISH and SUBSCRIBE is judged against the device's own topic tree (docs/mqtt.md). MQTTnet never
/// routes between clients: everything a device sends is taken here, and what reaches a device is published by its
/// transport on <c>devices/{id}/messages</c>.
/// </summary>
internal sealed class MqttGateway : IHostedService, IDisposable
{
    private const string SessionKey = "devicegate.session";

    private readonly Handshake _handshake;
    private readonly ConnectionAdmission _admission;
    private readonly DeviceSessions _sessions;
    private readonly DeviceBudgets _budgets;
    private readonly Delivery.Lanes _lanes;
    private readonly Delivery.DeliveryService _delivery;
    private readonly IGroupDirectory _groups;
    private readonly Rpc.RpcCoordinator _rpcs;
    private readonly State.DeviceStates _states;
    private readonly EventHub _events;
    private readonly GatewayMetrics _metrics;
    private readonly ShutdownState _shutdown;
    private readonly LogLimiter _logLimiter;
    private readonly GatewayOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<MqttGateway> _logger;
    private readonly MqttListener _listener;
    private readonly MqttServer _server;
    private readonly Action<DeviceSession> _onClosing;
    private readonly MqttSessionMemory _memory;

    // The current MQTT connection of each device id on this node (MQTTnet's own takeover needs telling apart).
    private readonly ConcurrentDictionary<string, DeviceSession> _connections = new(StringComparer.Ordinal);
    private ITimer? _keepAliveSweep;

    public MqttGateway(Handshake handshake, ConnectionAdmission admission, DeviceSessions sessions, DeviceBudgets budgets, Delivery.Lanes lanes,
        Delivery.DeliveryService delivery, IGroupDirectory groups, IDeviceDirectory directory, Rpc.RpcCoordinator rpcs, State.DeviceStates states, EventHub events, GatewayMetrics metrics, ShutdownState shutdown, LogLimiter logLimiter,
        IOptions<GatewayOptions> options, TimeProvider time, ILogger<MqttGateway> logger)
    {
        _handshake = handshake;
        _admission = admission;
        _sessions = sessions;
        _budgets = budgets;
        _lanes = lanes;
        _delivery = delivery;
        _groups = groups;
        _rpcs = rpcs;
        _states = states;
        _events = events;
        _metrics = metrics;
        _shutdown = shutdown;
        _logLimiter = logLimiter;
        _options = options.Value;
        _time = time;
        _logger = logger;
        _onClosing = sessions.Closing;
        _memory = new MqttSessionMemory(directory, _options, time, logger);

        var builder = new MqttServerOptionsBuilder()
            .WithPersistentSessions(false)
            // MQTTnet's per-client queue sits behind ours (bounded in messages and bytes): it never needs to drop.
            .WithMaxPendingMessagesPerClient(Math.Max(_options.Limits.SendQueueMessages, _options.Delivery.MaxInFlight) + 16)
            .WithKeepAlive()
            // MQTTnet's default is 100 s: a socket that sends no CONNECT (or stops mid-packet) holds a connection slot that long.
            .WithDefaultCommunicationTimeout(TimeSpan.FromSeconds(10))
            // Connections come from our listener (TCP and WebSocket, each behind a packet size guard), not MQTTnet's.
            .WithoutDefaultEndpoint();
        _listener = new MqttListener(_options, logger, logLimiter);
        _server = new MqttServerFactory().CreateMqttServer(builder.Build(), [_listener], new MqttLog(logger, logLimiter));
        _server.ValidatingConnectionAsync += ValidatingConnectionAsync;
        _server.ClientConnectedAsync += ClientConnectedAsync;
        _server.ClientDisconnectedAsync += ClientDisconnectedAsync;
        _server.InterceptingSubscriptionAsync += InterceptingSubscriptionAsync;
        _server.InterceptingInboundPacketAsync += InterceptingInboundPacketAsync;
        _server.InterceptingPublishAsync += InterceptingPublishAsync;
        _server.ClientAcknowledgedPublishPacketAsync += ClientAcknowledgedPublishPacketAsync;
        _server.ClientSubscribedTopicAsync += ClientSubscribedTopicAsync;
        _server.InterceptingOutboundPacketAsync += InterceptingOutboundPacketAsync;
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        // MQTTnet drops a client silent for 1.5 times the keep-alive it asked for, but a client may ask for none (0) or
        // for 18 hours: the sweep holds every client to DeviceGate:Mqtt:MaxKeepAlive, so a dead one leaves presence.
        var every = TimeSpan.FromTicks(Math.Clamp(_options.Mqtt.MaxKeepAlive.Ticks / 4, TimeSpan.FromMilliseconds(250).Ticks, TimeSpan.FromSeconds(30).Ticks));
        _keepAliveSweep = _time.CreateTimer(_ => SweepKeepAlive(), null, every, every);
        return _server.StartAsync();
    }

    private void SweepKeepAlive()
    {
        var now = _time.GetTimestamp();
        foreach (var session in _connections.Values)
        {
            var transport = (MqttTransport)session.Transport;
            if (_time.GetElapsedTime(Volatile.Read(ref transport.LastHeard), now) > transport.KeepAlive * 1.5)
            {
                session.RequestClose(1006, MqttTransport.KeepAliveTimeout, dropBacklog: true);
            }
        }
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        _keepAliveSweep?.Dispose();
        try
        {
            await _server.StopAsync(new MqttServerStopOptionsBuilder()
                .WithDefaultClientDisconnectOptions(o => o.WithReasonCode(MqttDisconnectReasonCode.ServerShuttingDown)).Build()).ConfigureAwait(false);
        }
        catch (Exception e) when (e is ObjectDisposedException or InvalidOperationException)
        {
            // Already stopped.
        }
    }

    public void Dispose()
    {
        _keepAliveSweep?.Dispose();
        _server.Dispose();
    }

    /// <summary><c>GET /mqtt</c>: a WebSocket with the <c>mqtt</c> subprotocol, handed to MQTTnet.</summary>
    public async Task HandleWebSocketAsync(HttpContext context)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            context.Response.StatusCode = StatusCodes.Status426UpgradeRequired;
            context.Response.Headers.Upgrade = "websocket";
            return;
        }
        if (_options.Mqtt.CheckOrigin && _handshake.CheckOrigin(new HttpUpgrade(context)) is { } refused)
        {
            context.Response.StatusCode = StatusCodes.Status403Forbidden;
            await context.Response.WriteAsync(refused).ConfigureAwait(false);
            return;
        }
        var subprotocol = MqttSubProtocolSelector.SelectSubProtocol(context.Request);
        using var socket = await context.WebSockets.AcceptWebSocketAsync(new WebSocketAcceptContext
        {
            SubProtocol = subprotocol,
            KeepAliveInterval = _options.WebSockets.KeepAliveInterval,
            KeepAliveTimeout = _options.WebSockets.KeepAliveTimeout,
        }).ConfigureAwait(false);
        await _listener.RunWebSocketAsync(socket, context).ConfigureAwait(false);
    }

    /// <summary>Still the MQTT connection of its device id here (not taken over by a newer MQTT connection).</summary>
    internal bool IsCurrent(DeviceSession session) => _connections.TryGetValue(session.DeviceId, out var current) && ReferenceEquals(current, session);

    internal Task DisconnectAsync(string device, MqttDisconnectReasonCode reason, string text) =>
        SafeAsync(() => _server.DisconnectClientAsync(device, new MqttServerClientDisconnectOptionsBuilder().WithReasonCode(reason).WithReasonString(text).Build()));

    /// <summary>
    /// One message to the device on one of its own topics (<paramref name="suffix"/> under <c>devices/{id}/</c>), put
    /// straight into its MQTTnet session's queue as MQTTnet's routing would for its subscription: QoS 1 capped by the
    /// QoS granted, its MQTT 5 subscription identifier. A message carries user properties (and, MQTT 5, a content type
    /// when binary); an rpc request (<paramref name="rpcId"/>) carries, for MQTT 5, the reply topic and the rpc id as
    /// correlation data. Not subscribed: not sent (as MQTTnet drops a publish nobody subscribed to).
    /// </summary>
    internal static bool Publish(MqttTransport transport, string suffix, string topic, Messages.OutboundMessage message, string? rpcId)
    {
        if (!transport.Own.TryGetValue(suffix, out var subscription) || transport.MqttSession is not { } mqtt) return false;
        var m = NewMessage(topic, message, transport.Version, subscription);
        var v5 = transport.Version == MqttProtocolVersion.V500;
        if (rpcId is not null)
        {
            if (v5)
            {
                m.ResponseTopic = MqttTopics.RpcReply(transport.Session.DeviceId);
                m.CorrelationData = System.Text.Encoding.UTF8.GetBytes(rpcId);
            }
            return mqtt.TryEnqueueApplicationMessage(m, out _);
        }
        if (message.Message is { } source)
        {
            // Kept on the server's packet whatever the version (the PUBACK names it); only MQTT 5 puts them on the wire.
            m.UserProperties = [Property("id", source.Id), Property("from", source.From)];
            if (source.Group is not null) m.UserProperties.Add(Property("group", source.Group));
            if (message.Observer is Delivery.DeviceLane.Entry { Attempts: > 1 }) m.Dup = true;
        }
        if (v5 && message.Type != System.Net.WebSockets.WebSocketMessageType.Text) m.ContentType = "application/octet-stream";
        return mqtt.TryEnqueueApplicationMessage(m, out _);
    }

    /// <summary>A PUBLISH from the gateway: QoS 1 capped by the subscription's; MQTT 5 marks text payloads as UTF-8.</summary>
    private static MqttApplicationMessage NewMessage(string topic, Messages.OutboundMessage message, MqttProtocolVersion version, OwnSubscription subscription) => new()
    {
        Topic = topic,
        Payload = new System.Buffers.ReadOnlySequence<byte>(message.Payload),
        QualityOfServiceLevel = subscription.Qos == MqttQualityOfServiceLevel.AtMostOnce ? MqttQualityOfServiceLevel.AtMostOnce : MqttQualityOfServiceLevel.AtLeastOnce,
        SubscriptionIdentifiers = version == MqttProtocolVersion.V500 && subscription.Identifier != 0 ? [subscription.Identifier] : null,
        PayloadFormatIndicator = version == MqttProtocolVersion.V500 && message.Type == System.Net.WebSockets.WebSocketMessageType.Text
            ? MqttPayloadFormatIndicator.CharacterData
            : MqttPayloadFormatIndicator.Unspecified,
    };

    private static MQTTnet.Packets.MqttUserProperty Property(string name, string value) => new(name, System.Text.Encoding.UTF8.GetBytes(value).AsMemory());

    private async Task ValidatingConnectionAsync(ValidatingConnectionEventArgs e)
    {
        var id = e.ClientId;
        var remote = (e.RemoteEndPoint as IPEndPoint)?.Address;
        if (_shutdown.IsDraining)
        {
            Refuse(e, MqttConnectReasonCode.ServerUnavailable, "server is shutting down", "draining", id);
            return;
        }
        if (string.IsNullOrEmpty(id) || !DeviceId.IsValid(id) || id == DeviceId.Server)
        {
            Refuse(e, MqttConnectReasonCode.ClientIdentifierNotValid, "the client id is the device id: 1-128 characters of [A-Za-z0-9._:-], not 'server'", "invalid_device_id", null);
            return;
        }
        if (_admission.TryAdmit(remote) is { } refusal)
        {
            Refuse(e, MqttConnectReasonCode.ServerUnavailable, refusal.Reason, refusal.Code, id);
            return;
        }
        var admitted = true;
        try
        {
            Handshake.Outcome outcome;
            try
            {
                // The username is ignored; the password is the device token (none: only with AllowAnonymousDevices).
                var token = string.IsNullOrEmpty(e.Password) ? null : e.Password;
                outcome = token is null && !_options.Auth.AllowAnonymousDevices
                    ? new Handshake.Outcome(401, "token_missing", "a device token is required as the password", id, null)
                    : await _handshake.CheckTokenAsync(id, token).ConfigureAwait(false);
            }
            catch (Exception ex) when (StoreFailures.Is(ex))
            {
                Refuse(e, MqttConnectReasonCode.ServerUnavailable, "the directory (revocations) cannot be read right now", "store_unavailable", id);
                return;
            }
            if (!outcome.Accepted)
            {
                Refuse(e, MqttConnectReasonCode.NotAuthorized, outcome.Reason, outcome.Code, id);
                return;
            }

            var session = new DeviceSession(id, Protocol.ConnectionMode.Mqtt, outcome.Identity?.Permissions ?? Auth.DevicePermissions.Unrestricted,
                _budgets.For(id), _time.GetUtcNow()) { Protocol = e.ProtocolVersion == MqttProtocolVersion.V500 ? "5" : "3.1.1" };
            var transport = new MqttTransport(this, session, e.ProtocolVersion, _options.Limits, _metrics) { Closing = _onClosing };
            var asked = TimeSpan.FromSeconds(e.KeepAlivePeriod ?? 0);
            transport.KeepAlive = asked == TimeSpan.Zero || asked > _options.Mqtt.MaxKeepAlive ? _options.Mqtt.MaxKeepAlive : asked;
            transport.LastHeard = _time.GetTimestamp();
            session.Attach(transport, _lanes.Create(session));
            // An older MQTT connection of this id here is closed (4000) and gone from MQTTnet before this one is made:
            // MQTTnet's own takeover races with an older connection that is ending at that moment (a device that
            // disconnects and reconnects at once), and can then remove the new client instead of the old.
            if (_connections.TryGetValue(id, out var older))
            {
                older.RequestClose(Protocol.CloseCodes.Replaced, Protocol.CloseReasons.Replaced, dropBacklog: true);
                try
                {
                    await older.Transport.Completion.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
                }
                catch (TimeoutException)
                {
                    // MQTTnet did not report it gone in time: its own takeover stops it, and the session ends here.
                    ((MqttTransport)older.Transport).Disconnected(clean: false, takenOver: true);
                }
            }
            await _memory.OpenAsync(e, transport).ConfigureAwait(false);
            _connections[id] = session;
            try
            {
                await _sessions.OpenAsync(session).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                _connections.TryRemove(new KeyValuePair<string, DeviceSession>(id, session));
                transport.Disconnected(clean: false, takenOver: false);
                if (!StoreFailures.Is(ex)) throw;
                Refuse(e, MqttConnectReasonCode.ServerUnavailable, "presence cannot be recorded right now", "store_unavailable", id);
                return;
            }
            e.SessionItems[SessionKey] = session;
            admitted = false; // released when the session ends
            _ = RunAsync(session, remote);
        }
        finally
        {
            if (admitted) _admission.Release(remote);
        }
    }

    private void Refuse(ValidatingConnectionEventArgs e, MqttConnectReasonCode code, string reason, string logCode, string? device)
    {
        e.ReasonCode = code;
        if (e.ProtocolVersion == MqttProtocolVersion.V500) e.ReasonString = reason;
        _metrics.HandshakesRefused.Add(logCode);
        if (_logLimiter.ShouldLog("mqtt-refused:" + logCode, out var suppressed))
        {
            Log.HandshakeRefused(_logger, code == MqttConnectReasonCode.NotAuthorized ? 401 : 503, reason, device, (e.RemoteEndPoint as IPEndPoint)?.Address.ToString(), suppressed);
        }
    }

    /// <summary>The session's life after CONNECT was accepted: until its transport is gone, then the common teardown.</summary>
    private async Task RunAsync(DeviceSession session, IPAddress? remote)
    {
        try
        {
            await session.Transport.Completion.ConfigureAwait(false);
        }
        finally
        {
            await _sessions.CloseAsync(session, started: Volatile.Read(ref ((MqttTransport)session.Transport).StartedFlag) != 0).ConfigureAwait(false);
            _admission.Release(remote);
            await _memory.ClosedAsync((MqttTransport)session.Transport).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Each PUBLISH MQTTnet's send loop writes to a device is the oldest of what its transport put in the session's
    /// queue (its queue budget and the lane hear it written). The CONNACK says whether a remembered session was
    /// resumed, and (MQTT 5) the session expiry granted when it is not the one asked for.
    /// </summary>
    private Task InterceptingOutboundPacketAsync(InterceptingPacketEventArgs e)
    {
        if (e.Packet is MQTTnet.Packets.MqttPublishPacket)
        {
            if (e.SessionItems[SessionKey] is DeviceSession { Transport: MqttTransport sending }) sending.Sent();
            return Task.CompletedTask;
        }
        if (e.Packet is MQTTnet.Packets.MqttConnAckPacket connack && _connections.TryGetValue(e.ClientId, out var session))
        {
            var transport = (MqttTransport)session.Transport;
            connack.IsSessionPresent = transport.SessionPresent;
            if (transport.GrantedExpiry is { } granted) connack.SessionExpiryInterval = granted;
        }
        return Task.CompletedTask;
    }

    private async Task ClientConnectedAsync(ClientConnectedEventArgs e)
    {
        if (!_connections.TryGetValue(e.ClientId, out var session)) return;
        // A resumed MQTTnet session keeps the older connection's items: this connection is the current one.
        e.SessionItems[SessionKey] = session;
        var transport = (MqttTransport)session.Transport;
        if (Interlocked.Exchange(ref transport.StartedFlag, 1) == 0)
        {
            // The lane starts when the device subscribes to its messages: stored messages wait for the subscription.
            _sessions.Started(session, (e.RemoteEndPoint as IPEndPoint)?.Address.ToString(), startLane: false);
        }
        // A remembered session: its subscriptions are made again, through the same interceptors as the device's own
        // SUBSCRIBE (before MQTTnet reads the client's next packet).
        if (transport.Resumed is { Count: > 0 } resumed) await SafeAsync(() => _server.SubscribeAsync(e.ClientId, resumed.ToList())).ConfigureAwait(false);
    }

    private Task ClientDisconnectedAsync(ClientDisconnectedEventArgs e)
    {
        if (e.SessionItems[SessionKey] is not DeviceSession session) return Task.CompletedTask;
        _connections.TryRemove(new KeyValuePair<string, DeviceSession>(session.DeviceId, session));
        // MQTT 5: a DISCONNECT may change the session expiry (MQTTnet reads an absent one as 0: the CONNECT's stays).
        if (e.SessionExpiryInterval > 0) ((MqttTransport)session.Transport).DisconnectExpiry = e.SessionExpiryInterval;
        ((MqttTransport)session.Transport).Disconnected(clean: e.DisconnectType == MqttClientDisconnectType.Clean, takenOver: e.DisconnectType == MqttClientDisconnectType.Takeover);
        return Task.CompletedTask;
    }

    private DeviceSession? Current(string clientId) => _connections.TryGetValue(clientId, out var s) && !s.IsClosing ? s : null;

    /// <summary>
    /// Judges one topic filter of a SUBSCRIBE. Synchronous on purpose: MQTTnet calls it holding a thread-affine lock
    /// (an await here releases that lock on another thread and kills the connection). Group joins, which need the
    /// store, were done before, when the packet came in (<see cref="InterceptingInboundPacketAsync"/>).
    /// </summary>
    private Task InterceptingSubscriptionAsync(InterceptingSubscriptionEventArgs e)
    {
        var session = Current(e.ClientId);
        var filter = e.TopicFilter.Topic;
        if (session is null)
        {
            Deny(e);
            return Task.CompletedTask;
        }
        var transport = (MqttTransport)session.Transport;
        if (filter == MqttTopics.Messages(session.DeviceId))
        {
            session.AcksMessages = Keep(e, transport, MqttSessionMemory.Messages, Grant(e)) != MqttQualityOfServiceLevel.AtMostOnce;
            // MQTTnet records the subscription after this returns: the lane starts once it has (ClientSubscribedTopicAsync).
            return Task.CompletedTask;
        }
        if (filter == MqttTopics.Desired(session.DeviceId))
        {
            Keep(e, transport, MqttSessionMemory.Desired, Grant(e));
            // From now on the lane keeps desired-state messages for it (before, they stayed stored).
            session.TakesState = true;
            return Task.CompletedTask;
        }
        if (filter == MqttTopics.Rpc(session.DeviceId))
        {
            Keep(e, transport, MqttSessionMemory.Rpc, Grant(e));
            transport.AcceptsRpc = true;
            return Task.CompletedTask;
        }
        if (TryGroup(filter, out _) && transport.TakeJoin(filter) is { } joined)
        {
            // Group messages reach the device on its messages topic (with a group user property): no MQTTnet subscription.
            e.ProcessSubscription = false;
            e.Response.ReasonCode = joined;
            return Task.CompletedTask;
        }
        Deny(e);
        return Task.CompletedTask;
    }

    /// <summary>Grants a subscription to one of the device's own topics at QoS 0 or 1 (QoS 2 is served as 1: the ack is PUBACK).</summary>
    private static MqttQualityOfServiceLevel Grant(InterceptingSubscriptionEventArgs e)
    {
        if (e.TopicFilter.QualityOfServiceLevel == MqttQualityOfServiceLevel.ExactlyOnce) e.TopicFilter.QualityOfServiceLevel = MqttQualityOfServiceLevel.AtLeastOnce;
        var qos = e.TopicFilter.QualityOfServiceLevel;
        e.Response.ReasonCode = qos == MqttQualityOfServiceLevel.AtMostOnce ? MqttSubscribeReasonCode.GrantedQoS0 : MqttSubscribeReasonCode.GrantedQoS1;
        return qos;
    }

    private static MqttQualityOfServiceLevel Keep(InterceptingSubscriptionEventArgs e, MqttTransport transport, string suffix, MqttQualityOfServiceLevel qos)
    {
        transport.MqttSession ??= e.Session;
        transport.Own[suffix] = new OwnSubscription(qos, transport.Subscribing);
        return qos;
    }

    private static void Deny(InterceptingSubscriptionEventArgs e)
    {
        e.ProcessSubscription = false;
        e.Response.ReasonCode = MqttSubscribeReasonCode.NotAuthorized;
    }

    /// <summary>MQTTnet has the subscription: messages published on the topic now reach the device, so its lane starts.</summary>
    private async Task ClientSubscribedTopicAsync(ClientSubscribedTopicEventArgs e)
    {
        if (Current(e.ClientId) is not { } session) return;
        var transport = (MqttTransport)session.Transport;
        // MQTTnet raises this outside its locks and before the SUBACK: a remembered session is written by then.
        await _memory.ChangedAsync(transport).ConfigureAwait(false);
        if (e.TopicFilter.Topic == MqttTopics.Desired(session.DeviceId))
        {
            // A lane that started before the device took state catches up now (its start skipped state messages).
            if (Volatile.Read(ref transport.LaneStarted) == 1 && Interlocked.Exchange(ref transport.StateLoaded, 1) == 0 && session.Lane is { } running) _ = running.LoadStateAsync();
            return;
        }
        if (e.TopicFilter.Topic != MqttTopics.Messages(session.DeviceId)) return;
        // Not awaited: loading the backlog must not hold up MQTTnet's handling of this client.
        if (Interlocked.Exchange(ref transport.LaneStarted, 1) == 0 && session.Lane is { } lane) _ = lane.StartAsync();
    }

    /// <summary>
    /// Every packet a client sends, before MQTTnet handles it: SUBSCRIBE and UNSUBSCRIBE to group topics join and leave
    /// the groups here, where awaiting the store is safe, ahead of MQTTnet's (synchronous) subscription handling.
    /// </summary>
    private async Task InterceptingInboundPacketAsync(InterceptingPacketEventArgs e)
    {
        if (_connections.TryGetValue(e.ClientId, out var heard)) Volatile.Write(ref ((MqttTransport)heard.Transport).LastHeard, _time.GetTimestamp());
        switch (e.Packet)
        {
            case MQTTnet.Packets.MqttSubscribePacket subscribe when Current(e.ClientId) is { } session:
                if (!TakeTopics(e, session, subscribe.TopicFilters.Count)) break;
                ((MqttTransport)session.Transport).Subscribing = subscribe.SubscriptionIdentifier;
                foreach (var filter in subscribe.TopicFilters)
                {
                    if (TryGroup(filter.Topic, out var group)) ((MqttTransport)session.Transport).RecordJoin(filter.Topic, await JoinAsync(session, group).ConfigureAwait(false));
                }
                break;
            case MQTTnet.Packets.MqttPublishPacket publish when Current(e.ClientId) is { } session:
                if (publish.Payload.Length > _options.Limits.MaxMessageBytes)
                {
                    // The same limit as a WebSocket message (1009): the device is disconnected (MQTT 5: 0x95 packet too large).
                    e.ProcessPacket = false;
                    session.RequestClose(Protocol.CloseCodes.TooBig, Protocol.CloseReasons.TooBig, dropBacklog: true);
                    break;
                }
                Interlocked.Increment(ref ((MqttTransport)session.Transport).PublishesIn);
                break;
            case MQTTnet.Packets.MqttUnsubscribePacket unsubscribe when Current(e.ClientId) is { } session:
                if (!TakeTopics(e, session, unsubscribe.TopicFilters.Count)) break;
                var own = (MqttTransport)session.Transport;
                var keptChanged = false;
                foreach (var topic in unsubscribe.TopicFilters)
                {
                    if (topic == MqttTopics.Rpc(session.DeviceId)) own.AcceptsRpc = false;
                    if (topic == MqttTopics.Desired(session.DeviceId)) session.TakesState = false;
                    keptChanged |= topic.StartsWith(MqttTopics.DevicePrefix + session.DeviceId + "/", StringComparison.Ordinal)
                        && own.Own.TryRemove(MqttSessionMemory.Suffix(session.DeviceId, topic), out _);
                    if (!TryGroup(topic, out var group)) continue;
                    try
                    {
                        await _groups.RemoveAsync(group, session.DeviceId).ConfigureAwait(false);
                    }
                    catch (Exception ex) when (StoreFailures.Is(ex))
                    {
                        Log.StoreWriteFailed(_logger, ex.Message);
                    }
                }
                // One write for the whole UNSUBSCRIBE, before its UNSUBACK.
                if (keptChanged) await _memory.ChangedAsync(own).ConfigureAwait(false);
                break;
        }
    }

    /// <summary>
    /// A SUBSCRIBE or UNSUBSCRIBE may name the device's own topics and at most MaxGroupsPerDevice groups (each group
    /// is a store write), and counts against the device's message rate: more, or far over the rate, closes the connection.
    /// </summary>
    private bool TakeTopics(InterceptingPacketEventArgs e, DeviceSession session, int topics)
    {
        var closing = topics > _options.Limits.MaxGroupsPerDevice + MqttSessionMemory.Kept.Length
            ? TooManyTopics
            : session.Budget.TakeMessage() == DeviceBudget.Verdict.Close ? Protocol.CloseReasons.RateLimited : null;
        if (closing is null) return true;
        e.ProcessPacket = false;
        if (closing == Protocol.CloseReasons.RateLimited) _metrics.RateLimited.Add(1);
        Log.EnvelopeError(_logger, session.DeviceId, "mqtt_" + closing);
        session.RequestClose(Protocol.CloseCodes.PolicyViolation, closing, dropBacklog: true);
        return false;
    }

    private const string TooManyTopics = "too_many_topics";

    private async Task<MqttSubscribeReasonCode> JoinAsync(DeviceSession session, string group)
    {
        if (!session.Permissions.MayUseGroup(group)) return MqttSubscribeReasonCode.NotAuthorized;
        try
        {
            return await _groups.AddAsync(group, session.DeviceId, _options.Limits.MaxGroupsPerDevice).ConfigureAwait(false)
                ? MqttSubscribeReasonCode.GrantedQoS1
                : MqttSubscribeReasonCode.QuotaExceeded;
        }
        catch (Exception ex) when (StoreFailures.Is(ex))
        {
            return MqttSubscribeReasonCode.UnspecifiedError;
        }
    }

    private static bool TryGroup(string topic, out string group)
    {
        group = "";
        if (!topic.StartsWith(MqttTopics.GroupPrefix, StringComparison.Ordinal) || !topic.EndsWith(MqttTopics.MessagesSuffix, StringComparison.Ordinal)) return false;
        group = topic[MqttTopics.GroupPrefix.Length..^MqttTopics.MessagesSuffix.Length];
        return DeviceId.IsValid(group);
    }

    private Task InterceptingPublishAsync(InterceptingPublishEventArgs e)
    {
        // Nothing a device publishes is routed by MQTTnet: it is handled here (what reaches devices is put into their
        // sessions' queues directly, Publish).
        e.ProcessPublish = false;
        var session = Current(e.ClientId);
        if (session is null) return Task.CompletedTask;
        var m = e.ApplicationMessage;
        if (Interlocked.Decrement(ref ((MqttTransport)session.Transport).PublishesIn) < 0)
        {
            Interlocked.Increment(ref ((MqttTransport)session.Transport).PublishesIn);
            Will(session, m);
            return Task.CompletedTask;
        }
        if (m.Retain)
        {
            Refuse(e, session, MqttPubAckReasonCode.ImplementationSpecificError);
            return Task.CompletedTask;
        }
        return session.Budget.Throttle(out var close) is { } wait ? ThrottledAsync(e, session, m, wait, close) : HandlePublishAsync(e, session, m);
    }

    /// <summary>
    /// Over its message rate an MQTT device waits here: MQTTnet reads nothing more from its connection meanwhile
    /// (TCP flow control slows it down) and nothing it published is lost. Each wait is at most one token's refill;
    /// held without a break past ThrottledCloseAfter, the device is disconnected (rate_limited).
    /// </summary>
    private async Task ThrottledAsync(InterceptingPublishEventArgs e, DeviceSession session, MqttApplicationMessage m, TimeSpan wait, bool close)
    {
        Log.RateLimited(_logger, session.DeviceId);
        _metrics.RateLimited.Add(1);
        while (true)
        {
            if (close)
            {
                e.ProcessPublish = false;
                session.RequestClose(Protocol.CloseCodes.PolicyViolation, Protocol.CloseReasons.RateLimited, dropBacklog: true);
                return;
            }
            await Task.Delay(wait, _time).ConfigureAwait(false);
            if (session.Budget.Throttle(out close) is not { } next) break;
            wait = next;
        }
        await HandlePublishAsync(e, session, m).ConfigureAwait(false);
    }

    private Task HandlePublishAsync(InterceptingPublishEventArgs e, DeviceSession session, MqttApplicationMessage m)
    {
        _metrics.MessagesReceived.Add("mqtt");
        var payload = System.Buffers.BuffersExtensions.ToArray(m.Payload);
        _metrics.BytesIn.Add(payload.Length);
        // As for raw devices: text when the bytes are UTF-8 (whatever a payload format indicator claims), else binary.
        var data = MessageData.TextOrBinary(payload);
        var topic = m.Topic;
        var events = MqttTopics.Events(session.DeviceId);
        if (topic == events || topic.StartsWith(events + "/", StringComparison.Ordinal))
        {
            _events.Message(session.DeviceId, data, topic: topic[events.Length..]);
            return Task.CompletedTask;
        }
        if (topic == MqttTopics.Reported(session.DeviceId))
        {
            if (!State.StatePatch.TryParseObject(payload, out var patch, out _))
            {
                Refuse(e, session, MqttPubAckReasonCode.PayloadFormatInvalid);
                return Task.CompletedTask;
            }
            return ReportAsync(e, session, patch!);
        }
        if (topic == MqttTopics.RpcReply(session.DeviceId))
        {
            RpcReply(e, session, m, payload);
            return Task.CompletedTask;
        }
        if (TryGroup(topic, out var group))
        {
            if (!session.Permissions.MayUseGroup(group))
            {
                Refuse(e, session, MqttPubAckReasonCode.NotAuthorized);
                return Task.CompletedTask;
            }
            return PublishToGroupAsync(e, session, group, data);
        }
        if (topic.StartsWith(MqttTopics.DevicePrefix, StringComparison.Ordinal) && topic.EndsWith(MqttTopics.MessagesSuffix, StringComparison.Ordinal))
        {
            var to = topic[MqttTopics.DevicePrefix.Length..^MqttTopics.MessagesSuffix.Length];
            if (!DeviceId.IsValid(to) || to == DeviceId.Server || !session.Permissions.MaySendTo(to))
            {
                Refuse(e, session, MqttPubAckReasonCode.NotAuthorized);
                return Task.CompletedTask;
            }
            return SendToDeviceAsync(e, session, to, data);
        }
        Refuse(e, session, MqttPubAckReasonCode.TopicNameInvalid);
        return Task.CompletedTask;
    }

    /// <summary>
    /// The will of a device that dropped (no DISCONNECT): a <c>message</c> event with <c>"will": true</c>; its topic is
    /// given relative to <c>devices/{id}/events</c> when it is under it, whole otherwise. Not a message to anyone.
    /// </summary>
    private void Will(DeviceSession session, MqttApplicationMessage m)
    {
        var payload = System.Buffers.BuffersExtensions.ToArray(m.Payload);
        var data = MessageData.TextOrBinary(payload);
        var events = MqttTopics.Events(session.DeviceId);
        var topic = m.Topic == events || m.Topic.StartsWith(events + "/", StringComparison.Ordinal) ? m.Topic[events.Length..] : m.Topic;
        _events.Message(session.DeviceId, data, topic: topic, will: true);
    }

    /// <summary>
    /// A device's answer on <c>devices/{id}/rpc/reply</c>. With correlation data (MQTT 5): the rpc id; the payload is the
    /// reply's data (JSON as it is, other text as a JSON string), or, with an <c>error</c> user property (the code),
    /// the error's message. Without (MQTT 3.1.1): <c>{"id","data"}</c> or <c>{"id","error":{"code","message"}}</c>.
    /// </summary>
    private void RpcReply(InterceptingPublishEventArgs e, DeviceSession session, MqttApplicationMessage m, byte[] payload)
    {
        bool completed;
        if (m.CorrelationData is { Length: > 0 } correlation)
        {
            var id = System.Text.Encoding.UTF8.GetString(correlation);
            var code = m.UserProperties?.FirstOrDefault(p => p.Name == "error") is { } error ? MQTTnet.Packets.MqttUserPropertyExtensions.ReadValueAsString(error) : null;
            if (!System.Text.Unicode.Utf8.IsValid(payload))
            {
                Refuse(e, session, MqttPubAckReasonCode.PayloadFormatInvalid);
                return;
            }
            var reply = code is not null
                ? new Rpc.RpcReply(null, code, System.Text.Encoding.UTF8.GetString(payload))
                : new Rpc.RpcReply(IsJson(payload) ? payload : System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(System.Text.Encoding.UTF8.GetString(payload)), null, null);
            completed = _rpcs.Complete(session, id, reply);
        }
        else
        {
            try
            {
                using var doc = System.Text.Json.JsonDocument.Parse(payload, new System.Text.Json.JsonDocumentOptions { MaxDepth = Protocol.EnvelopeReader.MaxDepth });
                var root = doc.RootElement;
                if (root.ValueKind != System.Text.Json.JsonValueKind.Object || !JsonText.TryGetString(root.TryGetProperty("id"u8, out var idElement) ? idElement : default, out var id))
                {
                    Refuse(e, session, MqttPubAckReasonCode.PayloadFormatInvalid);
                    return;
                }
                completed = _rpcs.Complete(session, id, root.TryGetProperty("data"u8, out var data) ? data : default, root.TryGetProperty("error"u8, out var err) ? err : default);
            }
            catch (System.Text.Json.JsonException)
            {
                Refuse(e, session, MqttPubAckReasonCode.PayloadFormatInvalid);
                return;
            }
        }
        if (!completed) Log.LateReply(_logger, session.DeviceId, "(mqtt)");
    }

    private static bool IsJson(byte[] payload)
    {
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(payload, new System.Text.Json.JsonDocumentOptions { MaxDepth = Protocol.EnvelopeReader.MaxDepth });
            return true;
        }
        catch (System.Text.Json.JsonException)
        {
            return false;
        }
    }

    /// <summary>
    /// A publish the gateway will not take: MQTT 5 with QoS 1 hears why in the PUBACK; otherwise (3.1.1, or QoS 0,
    /// which has no answer) the connection is closed, as MQTT 3.1.1 asks of a server that refuses a publish.
    /// </summary>
    private void Refuse(InterceptingPublishEventArgs e, DeviceSession session, MqttPubAckReasonCode code)
    {
        Log.EnvelopeError(_logger, session.DeviceId, "mqtt_" + code);
        if (((MqttTransport)session.Transport).Version == MqttProtocolVersion.V500 && e.ApplicationMessage.QualityOfServiceLevel != MqttQualityOfServiceLevel.AtMostOnce)
        {
            e.Response.ReasonCode = code == MqttPubAckReasonCode.TopicNameInvalid ? MqttPubAckReasonCode.NotAuthorized : code;
            e.Response.ReasonString = code == MqttPubAckReasonCode.TopicNameInvalid ? $"'{e.ApplicationMessage.Topic}' is not a topic this device may publish to" : null;
            return;
        }
        e.CloseConnection = true;
    }

    /// <summary>A merge patch of the device's reported state (as an envelope <c>report</c>); over the size limit: MQTT 5 PUBACK 0x97.</summary>
    private async Task ReportAsync(InterceptingPublishEventArgs e, DeviceSession session, System.Text.Json.Nodes.JsonObject patch)
    {
        try
        {
            var (outcome, _, _) = await _states.ChangeAsync(session.DeviceId, StatePart.Reported, patch, replace: false, ifMatch: null).ConfigureAwait(false);
            if (outcome == State.StateChangeOutcome.TooLarge) Refuse(e, session, MqttPubAckReasonCode.QuotaExceeded);
        }
        catch (Exception ex) when (StoreFailures.Is(ex))
        {
            e.Response.ReasonCode = MqttPubAckReasonCode.UnspecifiedError;
        }
    }

    private async Task SendToDeviceAsync(InterceptingPublishEventArgs e, DeviceSession session, string to, MessageData data)
    {
        var result = await _delivery.SendNowAsync(to, new DeviceMessage(DeviceMessage.NewId(), session.DeviceId, null, data)).ConfigureAwait(false);
        if (result.Outcome != Delivery.SendOutcome.Sent) e.Response.ReasonCode = MqttPubAckReasonCode.NoMatchingSubscribers;
    }

    private async Task PublishToGroupAsync(InterceptingPublishEventArgs e, DeviceSession session, string group, MessageData data)
    {
        try
        {
            var result = await _delivery.PublishAsync(group, data, session.DeviceId, TimeSpan.Zero, except: session.DeviceId).ConfigureAwait(false);
            if (result.Recipients == 0) e.Response.ReasonCode = MqttPubAckReasonCode.NoMatchingSubscribers;
        }
        catch (Exception ex) when (StoreFailures.Is(ex))
        {
            e.Response.ReasonCode = MqttPubAckReasonCode.UnspecifiedError;
        }
    }

    private Task ClientAcknowledgedPublishPacketAsync(ClientAcknowledgedPublishPacketEventArgs e)
    {
        if (Current(e.ClientId) is not { } session) return Task.CompletedTask;
        var properties = e.PublishPacket.UserProperties;
        if (properties is null) return Task.CompletedTask;
        foreach (var p in properties)
        {
            if (p.Name == "id")
            {
                session.Lane?.Ack(MQTTnet.Packets.MqttUserPropertyExtensions.ReadValueAsString(p));
                break;
            }
        }
        return Task.CompletedTask;
    }

    private async Task SafeAsync(Func<Task> action)
    {
        try
        {
            await action().ConfigureAwait(false);
        }
        catch (Exception e) when (e is InvalidOperationException or ObjectDisposedException or OperationCanceledException)
        {
            // The client is gone already.
        }
    }
}
