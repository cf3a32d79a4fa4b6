using DeviceGate.Auth;
using DeviceGate.Protocol;

namespace DeviceGate.Sessions;

/// <summary>
/// What a connected device is, whatever carries its bytes: its id, mode, permissions, budgets, presence epoch and
/// delivery lane. The transport (<see cref="ISessionTransport"/>: a WebSocket today, MQTT next) is attached once
/// and owns the queue, the loops and the close handshake; <see cref="DeviceSessions"/> owns registration and
/// teardown. The registry maps device id to session.
/// </summary>
internal sealed class DeviceSession(string deviceId, ConnectionMode mode, DevicePermissions permissions, DeviceBudget budget, DateTimeOffset connectedAt)
{
    private ISessionTransport? _transport;

    public string DeviceId { get; } = deviceId;
    public ConnectionMode Mode { get; } = mode;
    public DevicePermissions Permissions { get; } = permissions;

    /// <summary>The device's rate, error and durable budgets: shared by its sessions on this node, so a reconnect does not refill them.</summary>
    public DeviceBudget Budget { get; } = budget;

    public DateTimeOffset ConnectedAt { get; } = connectedAt;

    /// <summary>
    /// The device acks what it is sent, so durable messages wait for the ack and are redelivered without it: envelope
    /// devices always, MQTT devices while subscribed with QoS 1, raw devices never.
    /// </summary>
    public bool AcksMessages { get; set; } = mode == ConnectionMode.Envelope;

    /// <summary>The device takes desired-state messages: envelope devices always, MQTT devices once subscribed to their state topic.</summary>
    public bool TakesState { get; set; } = mode == ConnectionMode.Envelope;

    /// <summary>What carries the session, as <c>GET /api/devices/{id}</c> shows it: <c>websocket</c> or <c>mqtt</c>.</summary>
    public string TransportName => Mode == ConnectionMode.Mqtt ? "mqtt" : "websocket";

    /// <summary>The MQTT version (<c>3.1.1</c>, <c>5</c>), or the WebSocket mode (<c>raw</c>, <c>devicegate.v1.json</c>).</summary>
    public string Protocol { get; init; } = mode == ConnectionMode.Envelope ? Subprotocols.EnvelopeJson : "raw";

    /// <summary>This session's presence epoch: a newer session of the same device anywhere has a higher one (set when opened).</summary>
    public long Epoch { get; internal set; }

    /// <summary>The targeted-delivery lane (none for echo).</summary>
    public IDeviceLane? Lane { get; private set; }

    public ISessionTransport Transport => _transport ?? throw new InvalidOperationException("The session has no transport yet.");

    public void Attach(ISessionTransport transport, IDeviceLane? lane)
    {
        _transport = transport;
        Lane = lane;
    }

    /// <summary>Queues a message without ever blocking; overflow closes the session with 4002.</summary>
    public EnqueueResult TryEnqueue(in OutboundMessage message) => Transport.TryEnqueue(message);

    /// <summary>Asks the transport to close (only the first request counts); false when it was closing already.</summary>
    public bool RequestClose(int code, string reason, bool dropBacklog) => Transport.RequestClose(code, reason, dropBacklog);

    public bool IsClosing => _transport?.IsClosing ?? false;
}

/// <summary>
/// How bytes reach a session's device. Implementations: the WebSocket (<c>Connections.DeviceSocket</c>). Contract:
/// enqueueing never blocks and keeps order; one writer at a time; the first close request wins and is reported
/// once to <see cref="DeviceSessions"/> (which then tears the session down); <see cref="Completion"/> completes when
/// the transport is gone, whichever side ended it.
/// </summary>
internal interface ISessionTransport
{
    EnqueueResult TryEnqueue(in OutboundMessage message);

    bool RequestClose(int code, string reason, bool dropBacklog);

    /// <summary>Drops the transport at once (a drain deadline passed).</summary>
    void Abort();

    bool IsClosing { get; }

    /// <summary>The code it was closed with (sent, or received from the device); 1006 when it died.</summary>
    int CloseCode { get; }

    string CloseReason { get; }

    /// <summary>The device started the close.</summary>
    bool ClosedByDevice { get; }

    Task Completion { get; }
}

/// <summary>
/// A transport that carries rpcs its own way (MQTT: a topic of their own) rather than as an envelope; it takes them
/// only while the device listens for them (an MQTT device subscribed to <c>devices/{id}/rpc</c>).
/// </summary>
internal interface IRpcCarrier
{
    bool AcceptsRpc { get; }

    EnqueueResult TryEnqueueRpc(string id, MessageData request, string? traceParent);
}

/// <summary>A session's ordered delivery lane, as the delivery side attaches it (Delivery.DeviceLane).</summary>
internal interface IDeviceLane
{
    /// <summary>Adds a message in acceptance order; false when the lane is closed.</summary>
    bool Push(DeviceMessage message, bool durable, DateTimeOffset? expiresAt);

    void Ack(string messageId);

    /// <summary>Drops a cancelled message that was not written yet.</summary>
    void Cancel(string messageId);

    /// <summary>Loads the device's stored messages; they go first.</summary>
    Task StartAsync();

    /// <summary>The device takes desired state from now on: its pending or owed state message joins the lane.</summary>
    Task LoadStateAsync();

    /// <summary>
    /// Its stored messages that this lane does not hold join it (after a message for it was stored while the hop to
    /// this node failed): what was acked meanwhile is not sent again.
    /// </summary>
    /// <returns>False when the store could not be read (nothing changed; try again later).</returns>
    Task<bool> CatchUpAsync();

    void Close();
}

/// <summary>Told when a session starts closing (pending rpcs fail, for instance). Registered in DI; called once per session.</summary>
internal interface ISessionObserver
{
    void OnClosing(DeviceSession session);
}
