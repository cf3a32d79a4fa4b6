using System.Collections.Concurrent;
using DeviceGate.Storage;

namespace DeviceGate.Delivery;

/// <summary>
/// Statuses of non-durable (ttl=0) messages, in memory and bounded: the oldest are forgotten first, and final
/// ones after DeviceGate:Delivery:StatusRetention. Durable messages keep theirs in the store.
/// </summary>
internal sealed class StatusBook(TimeProvider time)
{
    /// <summary>A status and when it was reached, as the book keeps it (no object per change).</summary>
    private readonly record struct Change(byte Status, long UtcTicks);

    /// <summary>The changes after <c>queued</c>: a ttl=0 message makes at most three (sent, acked; or cancelled).</summary>
    [System.Runtime.CompilerServices.InlineArray(3)]
    private struct Changes
    {
        private Change _first;
    }

    /// <summary>One remembered message. A slot is reused when its message is forgotten.</summary>
    private struct Slot
    {
        public Guid Id;
        public string Device;
        public long CreatedTicks;
        public int Attempts;
        public byte Count;
        public Changes After;

        public readonly Change Last => Count == 0 ? new Change(QueuedCode, CreatedTicks) : After[Count - 1];
    }

    private static readonly string[] Statuses =
        [MessageStatus.Queued, MessageStatus.Sent, MessageStatus.Acked, MessageStatus.Expired, MessageStatus.Cancelled, MessageStatus.Superseded];

    private const byte QueuedCode = 0;
    private const int FirstCapacity = 1024;

    // A ring of value slots and an index from id to slot, under one lock: a remembered message costs no object of its
    // own beyond its device string (it was nine, and at thousands of messages a second they all lived long enough to
    // be promoted, which made the collector's older generations the largest cost of a targeted send). Ids are the
    // UUIDs DeviceMessage.NewId makes, kept as Guids: an id of another shape was never given out here, so it is not
    // found. The ring grows to Defaults.InMemoryStatuses, then the oldest slot is reused.
    private readonly Lock _gate = new();
    private readonly Dictionary<Guid, int> _index = new();
    private Slot[] _slots = [];
    private int _next;

    private readonly ConcurrentDictionary<string, string> _idempotency = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> _keyOrder = new();

    // Counted here: ConcurrentQueue.Count takes a lock once the queue spans several segments, and this runs on every send.
    private int _keyCount;

    public void Add(string id, string device)
    {
        if (!TryKey(id, out var key)) return;
        var now = time.GetUtcNow().UtcTicks;
        lock (_gate)
        {
            if (_index.Remove(key, out var earlier)) _slots[earlier].Id = Guid.Empty;
            // Past the last slot: a larger ring while it may grow, otherwise round to the oldest.
            if (_next == _slots.Length)
            {
                if (_slots.Length < Defaults.InMemoryStatuses) Array.Resize(ref _slots, Math.Min(Defaults.InMemoryStatuses, Math.Max(FirstCapacity, _slots.Length * 2)));
                else _next = 0;
            }
            ref var slot = ref _slots[_next];
            if (slot.Id != Guid.Empty) _index.Remove(slot.Id);
            slot = new Slot { Id = key, Device = device, CreatedTicks = now };
            _index[key] = _next;
            _next++;
        }
    }

    /// <summary>Holds <paramref name="key"/> for message <paramref name="id"/>; false (with the holder's id) when another message has it.</summary>
    public bool TryReserveKey(string key, string id, out string earlier)
    {
        if (!_idempotency.TryAdd(key, id))
        {
            earlier = _idempotency.TryGetValue(key, out var held) ? held : id;
            return false;
        }
        earlier = id;
        _keyOrder.Enqueue(key);
        if (Interlocked.Increment(ref _keyCount) > Defaults.InMemoryStatuses && _keyOrder.TryDequeue(out var oldKey))
        {
            Interlocked.Decrement(ref _keyCount);
            _idempotency.TryRemove(oldKey, out _);
        }
        return true;
    }

    /// <summary>Frees a key whose message was not taken (the device was offline), so a retry sends.</summary>
    public void ReleaseKey(string key, string id) => _idempotency.TryRemove(new KeyValuePair<string, string>(key, id));

    /// <summary>Moves a message on; <c>sent</c> counts an attempt. Final states are never left: false when nothing changed.</summary>
    public bool Record(string id, string status)
    {
        var code = Array.IndexOf(Statuses, status);
        ArgumentOutOfRangeException.ThrowIfNegative(code, nameof(status));
        if (!TryKey(id, out var key)) return false;
        var now = time.GetUtcNow().UtcTicks;
        lock (_gate)
        {
            if (!_index.TryGetValue(key, out var i)) return false;
            ref var slot = ref _slots[i];
            if (Statuses[slot.Last.Status] is MessageStatus.Acked or MessageStatus.Expired or MessageStatus.Cancelled) return false;
            if (status == MessageStatus.Sent) slot.Attempts++;
            // More changes than the slot holds (not made by ttl=0 messages today): the latest replaces the one before.
            if (slot.Count < 3) slot.Count++;
            slot.After[slot.Count - 1] = new Change((byte)code, now);
            return true;
        }
    }

    public bool BelongsTo(string id, string device)
    {
        if (!TryKey(id, out var key)) return false;
        lock (_gate) return _index.TryGetValue(key, out var i) && _slots[i].Device == device;
    }

    public MessageRecord? Get(string id, TimeSpan retention)
    {
        if (!TryKey(id, out var key)) return null;
        lock (_gate)
        {
            if (!_index.TryGetValue(key, out var i)) return null;
            ref readonly var slot = ref _slots[i];
            var last = slot.Last;
            var status = Statuses[last.Status];
            if (status is not (MessageStatus.Queued or MessageStatus.Sent) && time.GetUtcNow().UtcTicks - last.UtcTicks > retention.Ticks) return null;
            var history = new StatusChange[slot.Count + 1];
            history[0] = new StatusChange(MessageStatus.Queued, At(slot.CreatedTicks));
            for (var c = 0; c < slot.Count; c++) history[c + 1] = new StatusChange(Statuses[slot.After[c].Status], At(slot.After[c].UtcTicks));
            return new MessageRecord(id, slot.Device, status, At(slot.CreatedTicks), At(last.UtcTicks), slot.Attempts, history);
        }
    }

    /// <summary>The Guid of an id as NewId writes it (lowercase, with hyphens); anything else is no id of this book.</summary>
    private static bool TryKey(string id, out Guid key) =>
        Guid.TryParseExact(id, "D", out key) && !id.AsSpan().ContainsAnyInRange('A', 'F') && key != Guid.Empty;

    private static DateTimeOffset At(long utcTicks) => new(utcTicks, TimeSpan.Zero);
}
