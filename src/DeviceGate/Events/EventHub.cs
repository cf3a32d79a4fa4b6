using System.Threading.Channels;
using Microsoft.Extensions.Options;

namespace DeviceGate.Events;

/// <summary>
/// Numbers every event, keeps the last <c>DeviceGate:Events:ReplayBuffer</c> events (and at most
/// <c>ReplayBufferBytes</c> of them) for readers that resume, and fans each one out to live readers through queues
/// bounded in count and bytes. Publishing never waits: a reader whose queue is full is dropped (it can resume).
/// </summary>
internal sealed class EventHub(IOptions<GatewayOptions> options, NodeIdentity node, TimeProvider time, GatewayMetrics metrics, IEventLog log)
{
    private readonly Lock _gate = new();
    private readonly GatewayEvent?[] _ring = new GatewayEvent?[Math.Max(1, options.Value.Events.ReplayBuffer)];
    // The ring's events in id order, for evicting the oldest once they hold more than ReplayBufferBytes.
    private readonly Queue<GatewayEvent> _retained = new();
    private readonly long _maxRingBytes = options.Value.Events.ReplayBufferBytes;
    private long _ringBytes;
    private readonly List<Subscription> _subscribers = [];

    // Where this life's numbering starts comes from the log (see IEventLog.Start).
    private readonly Numbering _ids = new(log.Start);

    /// <summary>The id before this node's first (exclusive start) and the last id handed out or received.</summary>
    private sealed class Numbering(long start)
    {
        public readonly long Start = start;
        public long Last = start;
    }
    private Subscription[] _snapshot = [];

    /// <summary>Live readers (stream readers and the webhook sender).</summary>
    public int SubscriberCount
    {
        get
        {
            lock (_gate) return _subscribers.Count;
        }
    }

    public long LastId
    {
        get
        {
            lock (_gate) return _ids.Last;
        }
    }

    public void Connected(string device) => Publish(id => GatewayEvent.Connected(id, node.Id, device, time.GetUtcNow()));

    public void Disconnected(string device, int code, string reason, string by) =>
        Publish(id => GatewayEvent.Disconnected(id, node.Id, device, time.GetUtcNow(), code, reason, by));

    public void Acked(string device, string messageId) => Publish(id => GatewayEvent.ForMessage(id, node.Id, EventTypes.Acked, device, messageId, time.GetUtcNow()));

    public void StateChanged(string device, string part, long version, string patchJson) =>
        Publish(id => GatewayEvent.StateChanged(id, node.Id, device, time.GetUtcNow(), part, version, patchJson));

    public void Expired(string device, string messageId) => Publish(id => GatewayEvent.ForMessage(id, node.Id, EventTypes.Expired, device, messageId, time.GetUtcNow()));

    public void Message(string device, MessageData data, string? traceParent = null, string? topic = null, bool will = false) =>
        Publish(id => GatewayEvent.Message(id, node.Id, device, time.GetUtcNow(), data, traceParent, topic, will));

    private void Publish(Func<long, GatewayEvent> create)
    {
        // Numbered and fanned out under the lock so every reader sees ids in increasing order (Last-Event-ID relies on
        // it); Offer is a counter and a TryWrite, never a wait. A shared log hands the event back through Receive.
        lock (_gate)
        {
            if (log.Append(_ids.Last, create) is not { } e) return;
            _ids.Last = e.Id;
            Keep(e);
            foreach (var s in _snapshot) s.Offer(e);
        }
    }

    /// <summary>Into the replay ring, evicting the oldest past ReplayBuffer events or ReplayBufferBytes. Under the lock.</summary>
    private void Keep(GatewayEvent e)
    {
        _ring[e.Id % _ring.Length] = e;
        _retained.Enqueue(e);
        _ringBytes += e.Json.Length;
        while (_retained.Count > _ring.Length || (_ringBytes > _maxRingBytes && _retained.Count > 1))
        {
            var old = _retained.Dequeue();
            _ringBytes -= old.Json.Length;
            if (ReferenceEquals(_ring[old.Id % _ring.Length], old)) _ring[old.Id % _ring.Length] = null;
        }
    }

    /// <summary>The oldest id the ring still holds (one past the last when empty).</summary>
    private long OldestRetained => _retained.TryPeek(out var first) ? first.Id : _ids.Last + 1;

    /// <summary>
    /// The shared log lost its events (Redis lost its data): numbering goes on above <paramref name="next"/>, and every
    /// live reader gets a <c>reset</c>, since events may have been missed.
    /// </summary>
    public void Lost(long next)
    {
        lock (_gate)
        {
            Array.Clear(_ring);
            _retained.Clear();
            _ringBytes = 0;
            if (next > _ids.Last) _ids.Last = next;
            var reset = GatewayEvent.Reset(_ids.Last, node.Id, time.GetUtcNow());
            foreach (var s in _snapshot) s.Offer(reset, force: true);
        }
    }

    /// <summary>An event from the shared log (cluster), in log order.</summary>
    public void Receive(GatewayEvent e)
    {
        lock (_gate)
        {
            if (e.Id <= _ids.Last) return;
            _ids.Last = e.Id;
            Keep(e);
            foreach (var s in _snapshot) s.Offer(e);
        }
    }

    /// <summary>
    /// Like <see cref="Subscribe"/>; in a cluster the missed events come from the shared log, so a reader can resume
    /// on any node.
    /// </summary>
    public async Task<Subscription> SubscribeAsync(long? lastEventId, int queueCapacity, Func<GatewayEvent, bool> filter)
    {
        if (lastEventId is not { } last) return Subscribe(null, queueCapacity, filter);
        // A log that keeps nothing beyond this node's ring (one node): the ring alone decides.
        if (await log.ReadAfterAsync(last, _ring.Length).ConfigureAwait(false) is not { } missed) return Subscribe(lastEventId, queueCapacity, filter);
        var s = new Subscription(this, queueCapacity, options.Value.Events.SubscriberBufferBytes, filter);
        lock (_gate)
        {
            var expectedNext = last + 1;
            if (missed.Count > 0 && missed[0].Id > expectedNext || missed.Count == 0 && _ids.Last > last && last >= 0 && !RingCovers(last))
            {
                s.Offer(GatewayEvent.Reset(Math.Max(_ids.Last, last), node.Id, time.GetUtcNow()), force: true);
            }
            else
            {
                foreach (var e in missed) s.Offer(e, force: true);
                var replayedUpTo = missed.Count > 0 ? missed[^1].Id : last;
                // Events that arrived here after the log read: from the ring.
                for (var id = replayedUpTo + 1; id <= _ids.Last; id++)
                {
                    if (_ring[id % _ring.Length] is { } e && e.Id == id) s.Offer(e, force: true);
                }
            }
            _subscribers.Add(s);
            _snapshot = [.. _subscribers];
        }
        return s;
    }

    private bool RingCovers(long last) => _ring[(last + 1) % _ring.Length] is { } e && e.Id == last + 1;

    /// <summary>
    /// Subscribes from now, or (with <paramref name="lastEventId"/>) from just after that event: the missed events
    /// come first if the buffer still holds them all, otherwise a <c>reset</c> event.
    /// </summary>
    public Subscription Subscribe(long? lastEventId, int queueCapacity, Func<GatewayEvent, bool> filter)
    {
        var s = new Subscription(this, queueCapacity, options.Value.Events.SubscriberBufferBytes, filter);
        lock (_gate)
        {
            if (lastEventId is { } last && last != _ids.Last)
            {
                // Behind the buffer, from before this node's start, or ahead of it (an id from another life): a reset.
                var oldest = Math.Max(_ids.Start + 1, OldestRetained);
                if (last + 1 < oldest || last > _ids.Last)
                {
                    s.Offer(GatewayEvent.Reset(_ids.Last, node.Id, time.GetUtcNow()), force: true);
                }
                else
                {
                    for (var id = last + 1; id <= _ids.Last; id++)
                    {
                        if (_ring[id % _ring.Length] is { } e && e.Id == id) s.Offer(e, force: true);
                    }
                }
            }
            _subscribers.Add(s);
            _snapshot = [.. _subscribers];
        }
        return s;
    }

    private void Dropped(Subscription s)
    {
        metrics.EventReadersDropped.Add("behind");
        Remove(s);
        // Its reader may be stuck writing to a client that does not read: tell it now, off this (publishing) thread.
        // The reader may have ended meanwhile (its request disposed): then there is nothing left to tell.
        if (s.OnDropped is { } dropped) ThreadPool.QueueUserWorkItem(static d => TryInvoke(d), dropped, preferLocal: false);
    }

    private static void TryInvoke(Action dropped)
    {
        try
        {
            dropped();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private void Remove(Subscription s)
    {
        lock (_gate)
        {
            if (_subscribers.Remove(s)) _snapshot = [.. _subscribers];
        }
    }

    /// <summary>
    /// One reader's queue, bounded in events and in bytes. Completed with <see cref="DroppedException"/> when the
    /// reader falls too far behind (it resumes with Last-Event-ID).
    /// </summary>
    public sealed class Subscription : IDisposable
    {
        private readonly EventHub _hub;
        private readonly Func<GatewayEvent, bool> _filter;
        private readonly Channel<GatewayEvent> _queue;
        private readonly int _capacity;
        private readonly long _maxBytes;
        private int _count;
        private long _bytes;

        internal Subscription(EventHub hub, int capacity, long maxBytes, Func<GatewayEvent, bool> filter)
        {
            _hub = hub;
            _filter = filter;
            _capacity = capacity;
            _maxBytes = maxBytes;
            _queue = Channel.CreateUnbounded<GatewayEvent>(new UnboundedChannelOptions { SingleReader = true });
        }

        public ChannelReader<GatewayEvent> Reader => _queue.Reader;

        /// <summary>Called (on the thread pool) once the reader was dropped for falling behind.</summary>
        public Action? OnDropped { get; set; }

        /// <summary>Call after each event read from <see cref="Reader"/>.</summary>
        public void Consumed(GatewayEvent e)
        {
            Interlocked.Decrement(ref _count);
            Interlocked.Add(ref _bytes, -e.Json.Length);
        }

        /// <summary>Replayed events (<paramref name="force"/>) are taken whatever the bounds: the replay ring bounds them already.</summary>
        internal void Offer(GatewayEvent e, bool force = false)
        {
            if (e.Type != EventTypes.Reset && !_filter(e)) return;
            var count = Interlocked.Increment(ref _count);
            var bytes = Interlocked.Add(ref _bytes, e.Json.Length);
            if (!force && (count > _capacity || bytes > _maxBytes))
            {
                if (_queue.Writer.TryComplete(new DroppedException())) _hub.Dropped(this);
                return;
            }
            _queue.Writer.TryWrite(e);
        }

        public void Dispose()
        {
            _queue.Writer.TryComplete();
            _hub.Remove(this);
        }
    }

    public sealed class DroppedException() : Exception("The event reader fell too far behind and was dropped.");
}
