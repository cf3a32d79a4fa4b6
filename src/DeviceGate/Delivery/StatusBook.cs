using System.Collections.Concurrent;
using DeviceGate.Storage;

namespace DeviceGate.Delivery;

/// <summary>
/// Statuses of non-durable (ttl=0) messages, in memory and bounded: the oldest are forgotten first, and final
/// ones after DeviceGate:Delivery:StatusRetention. Durable messages keep theirs in the store.
/// </summary>
internal sealed class StatusBook(TimeProvider time)
{
    private sealed class Entry(string device, DateTimeOffset created)
    {
        public readonly Lock Gate = new();
        public string Device { get; } = device;
        public string Status = MessageStatus.Queued;
        public DateTimeOffset Created { get; } = created;
        public DateTimeOffset Updated = created;
        public int Attempts;
        public readonly List<StatusChange> History = [new(MessageStatus.Queued, created)];
    }

    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> _order = new();
    private readonly ConcurrentDictionary<string, string> _idempotency = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> _keyOrder = new();

    // Counted here: ConcurrentQueue.Count takes a lock once the queue spans several segments, and this runs on every send.
    private int _orderCount;
    private int _keyCount;

    public void Add(string id, string device)
    {
        _entries[id] = new Entry(device, time.GetUtcNow());
        _order.Enqueue(id);
        if (Interlocked.Increment(ref _orderCount) > Defaults.InMemoryStatuses && _order.TryDequeue(out var old))
        {
            Interlocked.Decrement(ref _orderCount);
            _entries.TryRemove(old, out _);
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
        if (!_entries.TryGetValue(id, out var e)) return false;
        lock (e.Gate)
        {
            if (e.Status is MessageStatus.Acked or MessageStatus.Expired or MessageStatus.Cancelled) return false;
            var now = time.GetUtcNow();
            e.Status = status;
            e.Updated = now;
            if (status == MessageStatus.Sent) e.Attempts++;
            e.History.Add(new StatusChange(status, now));
            return true;
        }
    }

    public bool BelongsTo(string id, string device) => _entries.TryGetValue(id, out var e) && e.Device == device;

    public MessageRecord? Get(string id, TimeSpan retention)
    {
        if (!_entries.TryGetValue(id, out var e)) return null;
        lock (e.Gate)
        {
            if (e.Status is not (MessageStatus.Queued or MessageStatus.Sent) && time.GetUtcNow() - e.Updated > retention) return null;
            return new MessageRecord(id, e.Device, e.Status, e.Created, e.Updated, e.Attempts, e.History.ToArray());
        }
    }
}
