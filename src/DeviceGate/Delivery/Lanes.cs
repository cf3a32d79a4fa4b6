using DeviceGate.Sessions;
using Microsoft.Extensions.Options;

namespace DeviceGate.Delivery;

/// <summary>Makes each session's lane: its backlog comes from the outbox, its reports go to the tracker.</summary>
internal sealed class Lanes(Outbox outbox, DeliveryTracker tracker, IOptions<GatewayOptions> options, TimeProvider time)
{
    private readonly DeliveryOptions _o = options.Value.Delivery;
    private readonly int _maxWaiting = options.Value.Limits.SendQueueMessages;
    private readonly bool _propagateTrace = options.Value.Telemetry.PropagateToDevices;
    // One delegate for every lane (a method group per call would be one more object per device).
    private readonly Func<DeviceSession, Task<IReadOnlyList<Messages.StoredMessage>>> _loadPending = outbox.LoadPendingAsync;

    public DeviceLane Create(DeviceSession session) => new(session, _loadPending, tracker, _o.MaxInFlight, _maxWaiting, _o.AckTimeout, time, _propagateTrace);
}
