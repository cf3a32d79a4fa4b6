using DeviceGate.Connections;
using DeviceGate.Protocol;
using DeviceGate.Sessions;

namespace DeviceGate.Delivery;

/// <summary>
/// One connected device's ordered delivery queue: every targeted and group message, durable or not, in acceptance
/// order. At most MaxInFlight are outstanding: written and not yet acked (envelope) or not yet written (raw).
/// Unacked envelope messages are sent again (same id) after the ack timeout. Durable messages stay in the store
/// until acked (envelope) or written (raw), so whatever this lane never finished is delivered after a reconnect.
/// <para>Desired-state messages (<see cref="DeviceMessage.IsState"/>) go the same way, with two rules: a raw device
/// never gets one (it cannot ack; it stays stored), and the lane holds at most one: a newer version drops the older
/// one wherever it is (waiting or written and unacked), so it is never delivered again (latest wins).</para>
/// </summary>
internal sealed class DeviceLane : IDeviceLane
{
    private readonly Lock _gate = new();
    private readonly DeviceSession _connection;
    private readonly Func<DeviceSession, Task<IReadOnlyList<StoredMessage>>> _loadPending;
    private readonly ILaneReports _tracker;
    private readonly int _maxInFlight;
    private readonly int _maxWaiting;
    private readonly TimeSpan _ackTimeout;
    private readonly TimeProvider _time;
    // Made on first use: most devices are idle most of the time, and an idle lane then holds no collection at all.
    private Queue<Entry>? _waitingOrNull;
    private Dictionary<string, Entry>? _inFlightOrNull;
    // Ids of the durable messages this lane holds (a stored message read again is not taken twice); ttl-0 messages
    // are never read again, so they are not kept here.
    private HashSet<string>? _seenOrNull;
    // The last acked ids (bounded): a catch-up that read the store before an ack was recorded does not send them again.
    private HashSet<string>? _ackedOrNull;
    private Queue<string>? _ackedOrderOrNull;
    private Queue<Entry> _waiting => _waitingOrNull ??= new();
    private Dictionary<string, Entry> _inFlight => _inFlightOrNull ??= new(StringComparer.Ordinal);
    private HashSet<string> _seen => _seenOrNull ??= new(StringComparer.Ordinal);
    private HashSet<string> _acked => _ackedOrNull ??= new(StringComparer.Ordinal);
    private Queue<string> _ackedOrder => _ackedOrderOrNull ??= new();
    private const int RecentlyAcked = 1024;
    private List<Entry>? _heldWhileLoading = [];
    // The one desired-state message this lane holds (waiting or in flight), if any.
    private Entry? _state;
    private ITimer? _ackTimer;
    private long _order;
    // Started and not yet written, of the messages not held for an ack (they are not in _inFlight).
    private int _unwritten;
    private bool _closed;
    private readonly bool _propagateTrace;

    public DeviceLane(DeviceSession connection, Func<DeviceSession, Task<IReadOnlyList<StoredMessage>>> loadPending, ILaneReports tracker,
        int maxInFlight, int maxWaiting, TimeSpan ackTimeout, TimeProvider time, bool propagateTrace = false)
    {
        _propagateTrace = propagateTrace;
        _connection = connection;
        _loadPending = loadPending;
        _tracker = tracker;
        _maxInFlight = maxInFlight;
        _maxWaiting = maxWaiting;
        _ackTimeout = ackTimeout;
        _time = time;
    }

    private bool TracksAcks => _connection.AcksMessages;

    // Raw devices never get desired-state messages; MQTT devices once they subscribed to their state topic.
    private bool TakesState => _connection.TakesState;

    /// <summary>One message in this lane; also the write observer the connection calls back.</summary>
    internal sealed class Entry(DeviceLane lane, DeviceMessage message, bool durable, DateTimeOffset? expiresAt) : IWriteObserver
    {
        public DeviceMessage Message { get; } = message;
        public bool Durable { get; } = durable;
        public DateTimeOffset? ExpiresAt { get; } = expiresAt;
        public long AckDeadline;
        public bool Written;

        /// <summary>Superseded by a newer state message while still in this lane: skipped, never written again.</summary>
        public bool Dropped;

        /// <summary>Writes so far (1 on the first delivery).</summary>
        public int Attempts;

        /// <summary>When this lane took the message (TimeProvider timestamp), for the delivery-latency histogram.</summary>
        public long AcceptedAt;

        /// <summary>Acceptance order in this lane: redelivery keeps it.</summary>
        public long Order;

        /// <summary>Held in flight until its ack (durable, to a device that acks); otherwise done once written.</summary>
        public bool Tracked;

        public void OnWritten() => lane.Written(this);
    }

    /// <summary>Adds a message in acceptance order. False when this lane is closed (the device left meanwhile).</summary>
    public bool Push(DeviceMessage message, bool durable, DateTimeOffset? expiresAt)
    {
        lock (_gate)
        {
            if (_closed) return false;
            // A raw device does not get state messages; it stays stored (and superseded by the next one).
            if (message.IsState && !TakesState) return true;
            if (durable && (_ackedOrNull?.Contains(message.Id) == true || !_seen.Add(message.Id))) return true;
            var entry = new Entry(this, message, durable, expiresAt) { AcceptedAt = _time.GetTimestamp() };
            if (message.IsState && !AdmitState(entry)) return true;
            if (_heldWhileLoading is not null)
            {
                _heldWhileLoading.Add(entry);
                return true;
            }
            if (_waiting.Count >= _maxWaiting)
            {
                // The device does not keep up: the same rule as its socket queue. Durable messages stay stored.
                _connection.RequestClose(CloseCodes.SlowConsumer, CloseReasons.SlowConsumer, dropBacklog: true);
                return false;
            }
            // An idle lane (the usual case) writes it at once: no queue is made for it.
            if (_waitingOrNull is not { Count: > 0 } && InFlight < _maxInFlight)
            {
                Start(entry, _time.GetUtcNow());
                return true;
            }
            _waiting.Enqueue(entry);
            Pump();
            return true;
        }
    }

    /// <summary>Loads the device's stored messages; they go first, then whatever was pushed meanwhile.</summary>
    public async Task StartAsync()
    {
        IReadOnlyList<StoredMessage> stored;
        try
        {
            stored = await _loadPending(_connection).ConfigureAwait(false);
        }
        catch (Exception e) when (Storage.StoreFailures.Is(e))
        {
            // Without its backlog this connection would deliver out of order: let the device come back later.
            _connection.RequestClose(CloseCodes.InternalError, CloseReasons.StoreUnavailable, dropBacklog: true);
            return;
        }
        lock (_gate)
        {
            if (_closed) return;
            foreach (var m in stored)
            {
                if (m.StateVersion > 0 && !TakesState) continue;
                if (!_seen.Add(m.Id)) continue;
                var entry = new Entry(this, m.ToDeviceMessage(), durable: true, m.ExpiresAt) { AcceptedAt = _time.GetTimestamp() };
                if (entry.Message.IsState && !AdmitState(entry)) continue;
                _waiting.Enqueue(entry);
            }
            foreach (var held in _heldWhileLoading!) _waiting.Enqueue(held);
            _heldWhileLoading = null;
            Pump();
        }
    }

    /// <summary>
    /// The device started taking desired state after its lane started (an MQTT device subscribed to its state topic
    /// later): its pending or owed state message joins the lane now.
    /// </summary>
    // When the store cannot answer, the next reconnect catches up.
    public Task LoadStateAsync() => PushStoredAsync(m => m.StateVersion > 0);

    // Under the gate.
    private void Finished(string id)
    {
        if (!_acked.Add(id)) return;
        _ackedOrder.Enqueue(id);
        if (_ackedOrder.Count > RecentlyAcked) _acked.Remove(_ackedOrder.Dequeue());
    }

    public Task<bool> CatchUpAsync()
    {
        lock (_gate)
        {
            // A lane still loading its backlog reads the store anyway.
            if (_closed || _heldWhileLoading is not null) return Task.FromResult(true);
        }
        return PushStoredAsync(_ => true);
    }

    /// <summary>The device's stored messages that <paramref name="which"/> picks join the lane (Push skips what it holds or finished); false when the store could not be read.</summary>
    private async Task<bool> PushStoredAsync(Func<StoredMessage, bool> which)
    {
        IReadOnlyList<StoredMessage> stored;
        try
        {
            stored = await _loadPending(_connection).ConfigureAwait(false);
        }
        catch (Exception e) when (Storage.StoreFailures.Is(e))
        {
            return false;
        }
        foreach (var m in stored)
        {
            if (which(m)) Push(m.ToDeviceMessage(), durable: true, m.ExpiresAt);
        }
        return true;
    }

    public void Ack(string id)
    {
        lock (_gate)
        {
            if (_inFlightOrNull is null || !_inFlightOrNull.Remove(id, out var entry))
            {
                // A ttl=0 message is not held for its ack, but its status still moves.
                _tracker.AckedUntracked(_connection.DeviceId, id);
                return;
            }
            _seenOrNull?.Remove(id);
            Finished(id);
            if (entry == _state) _state = null;
            _tracker.Acked(_connection.DeviceId, entry);
            Pump();
        }
    }

    /// <summary>Drops a cancelled message that was not written yet.</summary>
    public void Cancel(string id)
    {
        lock (_gate)
        {
            if (_state?.Message.Id == id) _state = null;
            if (_waitingOrNull?.Any(e => e.Message.Id == id) == true)
            {
                var keep = _waiting.Where(e => e.Message.Id != id).ToList();
                _waiting.Clear();
                foreach (var e in keep) _waiting.Enqueue(e);
            }
        }
    }

    public void Close()
    {
        lock (_gate)
        {
            _closed = true;
            _ackTimer?.Dispose();
            _waitingOrNull?.Clear();
            _inFlightOrNull?.Clear();
        }
    }

    /// <summary>
    /// Latest wins: <paramref name="entry"/> (a state message) becomes the lane's one state message, dropping an older
    /// one; false (nothing changes) when the lane already holds one as new.
    /// </summary>
    private bool AdmitState(Entry entry)
    {
        if (_state is { } current)
        {
            if (current.Message.StateVersion >= entry.Message.StateVersion)
            {
                _seenOrNull?.Remove(entry.Message.Id);
                return false;
            }
            // The store marked it superseded when the newer one was accepted; here it just goes.
            current.Dropped = true;
            _seenOrNull?.Remove(current.Message.Id);
            _inFlightOrNull?.Remove(current.Message.Id);
        }
        _state = entry;
        return true;
    }

    private void Written(Entry entry)
    {
        lock (_gate)
        {
            if (!entry.Tracked) _unwritten--;
            if (entry.Dropped) return;
            entry.Written = true;
            if (entry.Tracked)
            {
                entry.AckDeadline = _time.GetTimestamp() + (long)(_ackTimeout.TotalSeconds * _time.TimestampFrequency);
                ArmAckTimer();
                _tracker.Sent(_connection.DeviceId, entry, final: false);
                return;
            }
            // Raw: delivered once written (at most once after that). ttl=0 envelope: not held for its ack.
            _seenOrNull?.Remove(entry.Message.Id);
            if (entry.Durable) Finished(entry.Message.Id);
            _tracker.Sent(_connection.DeviceId, entry, final: true);
            if (!_closed) Pump();
        }
    }

    private void Pump()
    {
        var now = _time.GetUtcNow();
        while (!_closed && _waitingOrNull is { Count: > 0 } && InFlight < _maxInFlight)
        {
            if (!Start(_waiting.Dequeue(), now)) return;
        }
    }

    /// <summary>Written and not acked (held for an ack), or not written yet: what MaxInFlight bounds.</summary>
    private int InFlight => (_inFlightOrNull?.Count ?? 0) + _unwritten;

    /// <summary>Hands one message to the connection; false when it refused (it is closing).</summary>
    private bool Start(Entry entry, DateTimeOffset now)
    {
        if (entry.Dropped) return true;
        if (entry.ExpiresAt is { } exp && exp <= now)
        {
            _seenOrNull?.Remove(entry.Message.Id);
            if (entry == _state) _state = null;
            return true; // The expiry sweep records it.
        }
        entry.Order = ++_order;
        entry.Tracked = TracksAcks && entry.Durable;
        if (entry.Tracked) _inFlight[entry.Message.Id] = entry;
        else _unwritten++;
        return Write(entry);
    }

    private bool Write(Entry entry)
    {
        entry.Attempts++;
        var result = _connection.TryEnqueue(entry.Message.For(_connection.Mode, _propagateTrace) with { Observer = entry });
        return result == EnqueueResult.Queued;
    }

    private void ArmAckTimer()
    {
        if (_closed) return;
        long next = long.MaxValue;
        foreach (var e in _inFlight.Values)
        {
            if (e.Written && e.AckDeadline < next) next = e.AckDeadline;
        }
        if (next == long.MaxValue) return;
        var due = _time.GetElapsedTime(_time.GetTimestamp(), next);
        if (due < TimeSpan.Zero) due = TimeSpan.Zero;
        _ackTimer ??= _time.CreateTimer(static s => ((DeviceLane)s!).OnAckTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        _ackTimer.Change(due, Timeout.InfiniteTimeSpan);
    }

    private void OnAckTimer()
    {
        lock (_gate)
        {
            if (_closed) return;
            var now = _time.GetTimestamp();
            var nowUtc = _time.GetUtcNow();
            foreach (var e in _inFlight.Values.OrderBy(e => e.Order).ToList())
            {
                if (!e.Written || e.AckDeadline > now) continue;
                if (e.ExpiresAt is { } exp && exp <= nowUtc)
                {
                    _inFlight.Remove(e.Message.Id);
                    _seenOrNull?.Remove(e.Message.Id);
                    if (e == _state) _state = null;
                    continue;
                }
                // Same id again: the device de-duplicates.
                e.Written = false;
                if (!Write(e)) return;
            }
            ArmAckTimer();
            Pump();
        }
    }
}

/// <summary>What a lane reports about its messages (<see cref="DeliveryTracker"/> records it).</summary>
internal interface ILaneReports
{
    /// <summary>Written to the socket; <paramref name="final"/> when nothing more is expected (raw, or ttl 0).</summary>
    void Sent(string device, DeviceLane.Entry entry, bool final);

    void Acked(string device, DeviceLane.Entry entry);

    /// <summary>An ack for a message the lane does not hold (a ttl-0 message is not held for its ack).</summary>
    void AckedUntracked(string device, string id);
}
