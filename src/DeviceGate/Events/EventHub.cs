using System.Threading.Channels;
using DeviceGate.Hosting;
using DeviceGate.Routing;
using Microsoft.Extensions.Options;

namespace DeviceGate.Events;

/// <summary>
/// Numbers every event, keeps the last <c>DeviceGate:Events:ReplayBuffer</c> for readers that resume, and fans each
/// one out to live readers through bounded queues. Publishing never waits: a reader whose queue is full is dropped.
/// </summary>
internal sealed class EventHub(IOptions<GatewayOptions> options, TimeProvider time)
{
    private readonly Lock _gate = new();
    private readonly GatewayEvent?[] _ring = new GatewayEvent?[Math.Max(1, options.Value.Events.ReplayBuffer)];
    private readonly List<Subscription> _subscribers = [];
    private long _lastId;
    private Subscription[] _snapshot = [];

    public long LastId
    {
        get
        {
            lock (_gate) return _lastId;
        }
    }

    public void Connected(string device) => Publish(id => GatewayEvent.Connected(id, device, time.GetUtcNow()));

    public void Disconnected(string device, int code, string reason) =>
        Publish(id => GatewayEvent.Disconnected(id, device, time.GetUtcNow(), code, reason));

    public void Acked(string device, string messageId) => Publish(id => GatewayEvent.ForMessage(id, EventTypes.Acked, device, messageId, time.GetUtcNow()));

    public void Expired(string device, string messageId) => Publish(id => GatewayEvent.ForMessage(id, EventTypes.Expired, device, messageId, time.GetUtcNow()));

    public void Message(string device, MessageData data) => Publish(id => GatewayEvent.Message(id, device, time.GetUtcNow(), data));

    private void Publish(Func<long, GatewayEvent> create)
    {
        // Fanned out under the lock so every reader sees ids in increasing order (Last-Event-ID relies on it);
        // Offer is a counter and a TryWrite, never a wait.
        lock (_gate)
        {
            var e = create(++_lastId);
            _ring[e.Id % _ring.Length] = e;
            foreach (var s in _snapshot) s.Offer(e);
        }
    }

    /// <summary>
    /// Subscribes from now, or (with <paramref name="lastEventId"/>) from just after that event: the missed events
    /// come first if the buffer still holds them all, otherwise a <c>reset</c> event.
    /// </summary>
    public Subscription Subscribe(long? lastEventId, int queueCapacity, Func<GatewayEvent, bool> filter)
    {
        var s = new Subscription(this, queueCapacity, filter);
        lock (_gate)
        {
            if (lastEventId is { } last && last < _lastId)
            {
                var oldest = Math.Max(1, _lastId - _ring.Length + 1);
                if (last + 1 < oldest || last < 0)
                {
                    s.Offer(GatewayEvent.Reset(_lastId, time.GetUtcNow()), force: true);
                }
                else
                {
                    for (var id = last + 1; id <= _lastId; id++) s.Offer(_ring[id % _ring.Length]!, force: true);
                }
            }
            _subscribers.Add(s);
            _snapshot = [.. _subscribers];
        }
        return s;
    }

    private void Remove(Subscription s)
    {
        lock (_gate)
        {
            if (_subscribers.Remove(s)) _snapshot = [.. _subscribers];
        }
    }

    /// <summary>One reader's queue. Completed with <see cref="DroppedException"/> when the reader falls too far behind.</summary>
    public sealed class Subscription : IDisposable
    {
        private readonly EventHub _hub;
        private readonly Func<GatewayEvent, bool> _filter;
        private readonly Channel<GatewayEvent> _queue;
        private readonly int _capacity;
        private int _count;

        internal Subscription(EventHub hub, int capacity, Func<GatewayEvent, bool> filter)
        {
            _hub = hub;
            _filter = filter;
            _capacity = capacity;
            _queue = Channel.CreateUnbounded<GatewayEvent>(new UnboundedChannelOptions { SingleReader = true });
        }

        public ChannelReader<GatewayEvent> Reader => _queue.Reader;

        /// <summary>Call after each event read from <see cref="Reader"/>.</summary>
        public void Consumed() => Interlocked.Decrement(ref _count);

        internal void Offer(GatewayEvent e, bool force = false)
        {
            if (e.Type != EventTypes.Reset && !_filter(e)) return;
            if (!force && Interlocked.Increment(ref _count) > _capacity)
            {
                _queue.Writer.TryComplete(new DroppedException());
                _hub.Remove(this);
                return;
            }
            if (force) Interlocked.Increment(ref _count);
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
