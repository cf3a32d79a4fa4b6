using DeviceGate.Events;
using DeviceGate.Storage;

namespace DeviceGate.Sessions;

/// <summary>
/// The one place a session is registered and torn down, for every transport: <see cref="OpenAsync"/> before the
/// transport's handshake completes (registry, takeover of an older session with 4000, presence and epoch), then
/// <see cref="Started"/>; the transport reports the first close request to <see cref="Closing"/>, and
/// <see cref="CloseAsync"/> runs once the transport is gone, whatever ended it.
/// </summary>
internal sealed class DeviceSessions(
    ConnectionRegistry registry,
    IPresence presence,
    IDeviceDirectory directory,
    EventHub events,
    GatewayMetrics metrics,
    IEnumerable<ISessionObserver> observers,
    TimeProvider time,
    ILogger<DeviceSessions> logger)
{
    private readonly ISessionObserver[] _observers = observers.ToArray();

    /// <summary>
    /// Registers the session and records its presence. On failure it is unregistered again and the exception
    /// propagates (the transport then abandons itself).
    /// </summary>
    public async Task OpenAsync(DeviceSession session)
    {
        directory.Seen(session.DeviceId, session.ConnectedAt);
        if (registry.Register(session) is { } replaced) Log.DeviceReplaced(logger, replaced.DeviceId);
        try
        {
            // Presence (and, in a cluster, the close of an older session on another node) before the handshake ends.
            session.Epoch = await presence.RegisterAsync(session).ConfigureAwait(false);
        }
        catch
        {
            registry.Unregister(session);
            throw;
        }
    }

    /// <summary>
    /// The transport is up: the session is counted and announced, and its lane starts (unless the transport starts it
    /// later: an MQTT device gets its messages once it subscribed).
    /// </summary>
    public void Started(DeviceSession session, string? remote, bool startLane = true)
    {
        Log.DeviceConnected(logger, session.DeviceId, remote);
        metrics.ConnectionsOpened.Add(1);
        metrics.ConnectedDevices.Add(1);
        events.Connected(session.DeviceId);
        if (startLane && session.Lane is { } lane) _ = lane.StartAsync();
    }

    /// <summary>The first close request of a session: its lane stops, observers are told, presence and the registry forget it at once.</summary>
    public void Closing(DeviceSession session)
    {
        foreach (var o in _observers) o.OnClosing(session);
        session.Lane?.Close();
        // Leave presence as soon as the close starts, not after the handshake: other nodes stop routing here at once.
        _ = presence.UnregisterAsync(session);
        registry.Unregister(session);
    }

    /// <summary>The transport is gone: counted, logged, announced, last seen recorded, presence forgotten. Never throws.</summary>
    public async Task CloseAsync(DeviceSession session, bool started)
    {
        // A transport ends only after its close started, but a failure before that may not have: start it here.
        if (!session.IsClosing) session.RequestClose(Protocol.CloseCodes.InternalError, Protocol.CloseReasons.InternalError, dropBacklog: true);
        registry.Unregister(session);
        var transport = session.Transport;
        if (started)
        {
            metrics.ConnectedDevices.Add(-1);
            metrics.ConnectionsClosed.Add(transport.CloseCode);
            var by = transport.ClosedByDevice ? "device" : "server";
            Log.DeviceDisconnected(logger, session.DeviceId, transport.CloseCode, LogText.Safe(transport.CloseReason), by);
            events.Disconnected(session.DeviceId, transport.CloseCode, transport.CloseReason, by);
        }
        directory.Seen(session.DeviceId, time.GetUtcNow());
        try
        {
            // Again, now that the epoch is surely known: a close that started while presence was still being recorded
            // (a takeover during OpenAsync) could not remove the entry that recording then wrote.
            await presence.UnregisterAsync(session).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Log.ClusterError(logger, "presence unregister", e.Message);
        }
    }
}
