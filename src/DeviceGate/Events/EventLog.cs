namespace DeviceGate.Events;

/// <summary>
/// The shared, numbered event log of a cluster (Redis: a counter, a capped stream and a channel). Absent on a
/// single node, where the hub numbers events itself.
/// </summary>
internal interface IEventLog
{
    /// <summary>Numbers the event (its <c>"seq":0</c> is replaced), keeps it for replay and tells every node.</summary>
    Task AppendAsync(byte[] json);

    /// <summary>Logged events after <paramref name="seq"/>, oldest first, at most <paramref name="max"/>.</summary>
    Task<IReadOnlyList<GatewayEvent>> ReadAfterAsync(long seq, int max);
}
