using System.Buffers;
using System.Collections.Concurrent;
using System.Net.WebSockets;
using DeviceGate.Protocol;
using DeviceGate.Sessions;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using MQTTnet.Server;

namespace DeviceGate.Connections;

/// <summary>
/// An MQTT device's session transport: what the lane hands it goes at once, on the caller's thread and in order, into
/// the device's MQTTnet session queue as a PUBLISH on its own topic (MQTTnet's send loop does the packet work and the
/// QoS 1 handshake). Bounded like the WebSocket's queue, in messages and bytes, counting what MQTTnet has not written
/// yet (4002 past either): a message counts as written when MQTTnet's send loop takes its PUBLISH (<see cref="Sent"/>).
/// Closing disconnects the client through MQTTnet with the reason that matches the close code; <see cref="Completion"/>
/// completes when MQTTnet reports it gone (or, when another MQTT connection of the same id took it over, at once:
/// MQTTnet stops a taken-over client itself).
/// </summary>
internal sealed class MqttTransport : ISessionTransport, IRpcCarrier
{
    private readonly MqttGateway _gateway;
    // What is in MQTTnet's queue for this device, in its order: its bytes and who hears it was written. Every PUBLISH
    // MQTTnet sends this client is one of these (MQTTnet routes nothing here), and it never drops one (its bound is
    // above ours), so the send loop's PUBLISH packets take them off in order.
    private readonly Queue<(int Bytes, IWriteObserver? Observer)> _pending = new();
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly GatewayMetrics _metrics;
    private readonly int _maxQueuedMessages;
    private readonly long _maxQueuedBytes;
    private readonly string _topic;
    private int _closeRequested;
    private QueueBudget _queued;

    public MqttTransport(MqttGateway gateway, DeviceSession session, MqttProtocolVersion version, LimitsOptions limits, GatewayMetrics metrics)
    {
        _gateway = gateway;
        Session = session;
        Version = version;
        _metrics = metrics;
        _maxQueuedMessages = limits.SendQueueMessages;
        _maxQueuedBytes = limits.SendQueueBytes;
        _topic = MqttTopics.Messages(session.DeviceId);
    }

    public DeviceSession Session { get; }

    /// <summary>1 once MQTTnet reported the client connected (the session is counted and announced then).</summary>
    internal int StartedFlag;

    /// <summary>1 once the lane started (the device subscribed to its messages).</summary>
    internal int LaneStarted;

    /// <summary>When the device last sent a packet (TimeProvider timestamp): the keep-alive sweep drops it after 1.5 × <see cref="KeepAlive"/> of silence.</summary>
    internal long LastHeard;

    /// <summary>The keep-alive the gateway holds the device to: what it asked for, at most DeviceGate:Mqtt:MaxKeepAlive (which also stands for none).</summary>
    internal TimeSpan KeepAlive;

    /// <summary>
    /// Its subscriptions to its own topics (relative to <c>devices/{id}/</c>) with the QoS granted and (MQTT 5) the
    /// subscription identifier: what the gateway publishes to it follows them, and a remembered session keeps them.
    /// </summary>
    internal readonly ConcurrentDictionary<string, OwnSubscription> Own = new(StringComparer.Ordinal);

    /// <summary>
    /// MQTTnet's session of this connection, known from its first subscription: what the gateway publishes to the
    /// device goes straight into that session's queue (MQTTnet's own routing would test every subscriber's filters).
    /// </summary>
    internal MqttSessionStatus? MqttSession;

    /// <summary>MQTT 5: the subscription identifier of the SUBSCRIBE being handled (0: none; one SUBSCRIBE at a time per client).</summary>
    internal uint Subscribing;

    /// <summary>How long its subscriptions are kept after it ends (zero: not kept), under <see cref="SessionOwner"/>.</summary>
    internal TimeSpan RememberFor;

    internal string SessionOwner = "";

    /// <summary>MQTT 5: the session expiry the gateway grants when it is not what the client asked for (CONNACK says so).</summary>
    internal uint? GrantedExpiry;

    /// <summary>MQTT 5: the session expiry interval of the client's DISCONNECT, when it set one.</summary>
    internal uint? DisconnectExpiry;

    /// <summary>A remembered session was found (CONNACK session present), and the subscriptions it resumes.</summary>
    internal bool SessionPresent;

    internal IReadOnlyList<MQTTnet.Packets.MqttTopicFilter>? Resumed;

    /// <summary>The subscriptions last written to the directory; writes go one at a time.</summary>
    internal string WrittenSubscriptions = "";

    internal readonly SemaphoreSlim MemoryWrites = new(1, 1);

    /// <summary>1 once the lane caught up with desired state for a state subscription that came after it started.</summary>
    internal int StateLoaded;

    // Group joins of the SUBSCRIBE being handled, by topic: made when the packet came in, read by the subscription
    // interceptor (one SUBSCRIBE at a time per client).
    private readonly Dictionary<string, MqttSubscribeReasonCode> _joins = new(StringComparer.Ordinal);

    /// <summary>
    /// PUBLISH packets that came in and are not handled yet. MQTTnet hands a dropped client's will to the publish
    /// interceptor like any publish, but no PUBLISH packet came in for it: that is how the will is told apart.
    /// </summary>
    internal int PublishesIn;

    internal void RecordJoin(string topic, MqttSubscribeReasonCode result)
    {
        lock (_joins) _joins[topic] = result;
    }

    internal MqttSubscribeReasonCode? TakeJoin(string topic)
    {
        lock (_joins) return _joins.Remove(topic, out var result) ? result : null;
    }

    public MqttProtocolVersion Version { get; }

    /// <summary>Called once, on the first close request (the session leaves the registry).</summary>
    public Action<DeviceSession>? Closing { get; init; }

    public int CloseCode { get; private set; } = 1006;
    public string CloseReason { get; private set; } = "aborted";
    public bool ClosedByDevice { get; private set; }
    public bool IsClosing => Volatile.Read(ref _closeRequested) != 0;
    public Task Completion => _done.Task;

    /// <summary>The device subscribed to <c>devices/{id}/rpc</c>: rpcs reach it (otherwise the API answers 409).</summary>
    public bool AcceptsRpc { get; set; }

    public EnqueueResult TryEnqueueRpc(string id, MessageData request, string? traceParent) =>
        // MQTT 5 carries the id as correlation data beside the request's own bytes; 3.1.1 wraps them: {"id","data"}.
        Enqueue(Version == MqttProtocolVersion.V500 ? new OutboundMessage(request.RawPayload, request.RawType) : OutboundMessage.Text(EnvelopeWriter.MqttRpc(id, request)), id);

    public EnqueueResult TryEnqueue(in OutboundMessage message) => Enqueue(message, null);

    private EnqueueResult Enqueue(OutboundMessage message, string? rpcId)
    {
        if (IsClosing) return EnqueueResult.Closed;
        string suffix, topic;
        if (rpcId is not null) (suffix, topic) = (MqttSessionMemory.Rpc, MqttTopics.Rpc(Session.DeviceId));
        else if (message.Message is { IsState: true }) (suffix, topic) = (MqttSessionMemory.Desired, MqttTopics.Desired(Session.DeviceId));
        else (suffix, topic) = (MqttSessionMemory.Messages, _topic);
        var taken = -1;
        bool queued;
        try
        {
            if (suffix == MqttSessionMemory.Desired) message = message with { Payload = DesiredPayload(message.Payload.Span) };
            if (!_queued.TryTake(message.Payload.Length, _maxQueuedMessages, _maxQueuedBytes))
            {
                if (RequestClose(CloseCodes.SlowConsumer, CloseReasons.SlowConsumer, dropBacklog: true)) _metrics.SendQueueOverflows.Add(1);
                return EnqueueResult.Overflow;
            }
            taken = message.Payload.Length;
            // Into the pending list and MQTTnet's queue together, so both have the same order (Sent takes this lock).
            lock (_pending)
            {
                queued = MqttGateway.Publish(this, suffix, topic, message, rpcId);
                if (queued) _pending.Enqueue((taken, message.Observer));
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // MQTTnet refused the message (the server is stopping), or a bug of ours: this one session ends (1011),
            // never the sender's call; durable messages stay stored.
            if (taken >= 0) Dequeued(taken);
            RequestClose(CloseCodes.InternalError, CloseReasons.InternalError, dropBacklog: true);
            return EnqueueResult.Closed;
        }
        // Not subscribed to that topic: not sent (as MQTTnet drops a publish nobody subscribed to), and done with;
        // heard on another thread, as a write would be (the lane calls this holding its lock, and its next message
        // would come back here: a lane that runs on while the device is unsubscribed must not recurse through it).
        if (!queued) ThreadPool.UnsafeQueueUserWorkItem(static s => s.Transport.Written(s.Bytes, s.Observer), (Transport: this, Bytes: taken, message.Observer), preferLocal: false);
        return EnqueueResult.Queued;
    }

    /// <summary>MQTTnet's send loop is writing a PUBLISH to this client (the outbound packet interceptor): the oldest pending message.</summary>
    internal void Sent()
    {
        (int Bytes, IWriteObserver? Observer) next;
        lock (_pending)
        {
            if (!_pending.TryDequeue(out next)) return;
            if (_pending.Count == 0 && _pending.Capacity > 16) _pending.TrimExcess();
        }
        Written(next.Bytes, next.Observer);
    }

    private void Written(int bytes, IWriteObserver? observer)
    {
        Dequeued(bytes);
        _metrics.BytesOut.Add(bytes);
        observer?.OnWritten();
    }

    public bool RequestClose(int code, string reason, bool dropBacklog)
    {
        if (!BeginClose(code, reason, byDevice: false)) return false;
        // Still this id's MQTT connection: MQTTnet disconnects it (an MQTT 5 client is told why), and Completion follows
        // when MQTTnet reports it gone. Otherwise a newer MQTT connection of the same id took over and MQTTnet stops
        // this one itself.
        if (_gateway.IsCurrent(Session)) _ = _gateway.DisconnectAsync(Session.DeviceId, reason == KeepAliveTimeout ? MqttDisconnectReasonCode.KeepAliveTimeout : ReasonFor(code), reason);
        else _done.TrySetResult();
        return true;
    }

    public void Abort() => RequestClose(1006, "aborted", dropBacklog: true);

    /// <summary>MQTTnet reports the client gone: a DISCONNECT from the device is a clean 1000, anything else 1006.</summary>
    public void Disconnected(bool clean, bool takenOver)
    {
        if (takenOver) BeginClose(CloseCodes.Replaced, CloseReasons.Replaced, byDevice: false);
        else if (clean) BeginClose(1000, "disconnect", byDevice: true);
        else BeginClose(1006, "connection lost", byDevice: false);
        _done.TrySetResult();
    }

    private bool BeginClose(int code, string reason, bool byDevice)
    {
        if (Interlocked.Exchange(ref _closeRequested, 1) != 0) return false;
        CloseCode = code;
        CloseReason = reason;
        ClosedByDevice = byDevice;
        Closing?.Invoke(Session);
        return true;
    }

    /// <summary>The close reason of a device silent past its keep-alive (MQTT 5: 0x8D).</summary>
    internal const string KeepAliveTimeout = "keepalive_timeout";

    private static MqttDisconnectReasonCode ReasonFor(int code) => code switch
    {
        CloseCodes.Replaced => MqttDisconnectReasonCode.SessionTakenOver,
        CloseCodes.GoingAway => MqttDisconnectReasonCode.ServerShuttingDown,
        CloseCodes.PolicyViolation => MqttDisconnectReasonCode.NotAuthorized,
        CloseCodes.SlowConsumer => MqttDisconnectReasonCode.QuotaExceeded,
        CloseCodes.TooBig => MqttDisconnectReasonCode.PacketTooLarge,
        _ => MqttDisconnectReasonCode.AdministrativeAction,
    };

    private void Dequeued(int bytes) => _queued.Return(bytes);

    /// <summary>A desired-state message as the state topic carries it: <c>{"version","desired","delta"}</c> (no envelope type or id).</summary>
    private static byte[] DesiredPayload(ReadOnlySpan<byte> envelope)
    {
        var reader = new System.Text.Json.Utf8JsonReader(envelope);
        using var doc = System.Text.Json.JsonDocument.ParseValue(ref reader);
        var root = doc.RootElement;
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(envelope.Length);
        using (var w = new System.Text.Json.Utf8JsonWriter(buffer, new System.Text.Json.JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteNumber("version"u8, root.GetProperty("version"u8).GetInt64());
            w.WritePropertyName("desired"u8);
            root.GetProperty("desired"u8).WriteTo(w);
            w.WritePropertyName("delta"u8);
            root.GetProperty("delta"u8).WriteTo(w);
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }
}

/// <summary>A subscription to one of the device's own topics: the QoS granted and the MQTT 5 subscription identifier (0: none).</summary>
internal readonly record struct OwnSubscription(MqttQualityOfServiceLevel Qos, uint Identifier);

/// <summary>The topic map of an MQTT device (docs/mqtt.md).</summary>
internal static class MqttTopics
{
    public static string Messages(string device) => $"devices/{device}/messages";

    public static string Events(string device) => $"devices/{device}/events";

    public static string Rpc(string device) => $"devices/{device}/rpc";

    public static string Reported(string device) => $"devices/{device}/state/reported";

    public static string Desired(string device) => $"devices/{device}/state/desired";

    public static string RpcReply(string device) => $"devices/{device}/rpc/reply";

    public const string GroupPrefix = "groups/";
    public const string DevicePrefix = "devices/";
    public const string MessagesSuffix = "/messages";
}
