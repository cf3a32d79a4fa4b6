using System.Collections.Concurrent;
using Microsoft.Extensions.Options;

namespace DeviceGate.Sessions;

/// <summary>
/// What one device may still do on this node: its message rate (and the second budget past which it is closed),
/// its envelope-error budget and its durable-send quota. Shared by all of the device's connections, so
/// reconnecting does not refill it. Thread-safe.
/// </summary>
internal sealed class DeviceBudget
{
    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private TokenBucket _messages;
    private TokenBucket _violations;
    private TokenBucket _errors;
    private TokenBucket _durable;
    private readonly TimeSpan _throttledCloseAfter;
    // When the device started waiting for its budget without a break since (0: it is not held).
    private long _throttledSince;

    public DeviceBudget(LimitsOptions limits, TimeProvider time)
    {
        _time = time;
        _throttledCloseAfter = limits.ThrottledCloseAfter;
        _messages = new TokenBucket(limits.DeviceMessagesPerSecond, limits.DeviceMessagesBurst);
        _violations = new TokenBucket(limits.DeviceMessagesPerSecond, limits.DeviceMessagesBurst);
        _errors = new TokenBucket(Defaults.EnvelopeErrorsPerSecond, Defaults.EnvelopeErrorBurst);
        _durable = new TokenBucket(limits.DeviceDurableMessagesPerMinute / 60.0, limits.DeviceDurableMessagesPerMinute);
    }

    public enum Verdict { Allowed, Dropped, Close }

    /// <summary>One inbound message: allowed, dropped (over the rate), or dropped with the device to be closed (far over it).</summary>
    public Verdict TakeMessage()
    {
        lock (_gate)
        {
            var now = _time.GetTimestamp();
            // The second budget refills at the same rate; it is only spent while the first is empty.
            if (_messages.TryTake(now, _time)) return Verdict.Allowed;
            return _violations.Spend(now, _time) ? Verdict.Dropped : Verdict.Close;
        }
    }

    /// <summary>
    /// Flow control for a device that gets no answer per message (raw, echo, MQTT): null when the message it sent
    /// may be handled now (a token is taken), else how long to stop reading before asking again. The device counts
    /// as held from its first wait until it sends slower than the rate (a message finds a spare token beyond its
    /// own); <paramref name="close"/> turns true once it has been held longer than ThrottledCloseAfter.
    /// </summary>
    public TimeSpan? Throttle(out bool close)
    {
        lock (_gate)
        {
            var now = _time.GetTimestamp();
            var tokens = _messages.Available(now, _time);
            if (tokens >= 1)
            {
                if (tokens >= 2) _throttledSince = 0;
                _messages.TryTake(now, _time);
                close = false;
                return null;
            }
            if (_throttledSince == 0) _throttledSince = now;
            close = _time.GetElapsedTime(_throttledSince, now) > _throttledCloseAfter;
            return TimeSpan.FromSeconds((1 - tokens) / _messages.PerSecond);
        }
    }

    /// <summary>One refused envelope; false when the device is past its error budget (close it).</summary>
    public bool TakeError()
    {
        lock (_gate) return _errors.Spend(_time.GetTimestamp(), _time);
    }

    /// <summary>Durable messages the device originates (a group publish takes one per member).</summary>
    public bool TryTakeDurable(int count)
    {
        lock (_gate) return _durable.TryTake(_time.GetTimestamp(), _time, count);
    }

    /// <summary>True when every budget has refilled: forgetting this device then changes nothing.</summary>
    public bool IsIdle()
    {
        lock (_gate)
        {
            var now = _time.GetTimestamp();
            return _messages.IsFull(now, _time) && _violations.IsFull(now, _time) && _errors.IsFull(now, _time) && _durable.IsFull(now, _time);
        }
    }

    /// <summary>No burst: the device earns tokens at the steady rates only (used when the budget table is full).</summary>
    public DeviceBudget Drained()
    {
        lock (_gate)
        {
            var now = _time.GetTimestamp();
            _messages.Drain(now);
            _errors.Drain(now);
            _durable.Drain(now);
        }
        return this;
    }
}

/// <summary>
/// Budgets by device id on this node. An entry is forgotten once all its buckets have refilled, which loses nothing
/// (a fresh entry is full too), so reconnecting never buys a new burst. At most <see cref="Capacity"/> entries;
/// past it a device without an entry gets a drained budget (steady rate, no burst) that is not kept.
/// </summary>
internal sealed class DeviceBudgets : IDisposable
{
    private readonly ConcurrentDictionary<string, DeviceBudget> _budgets = new(StringComparer.Ordinal);
    private readonly LimitsOptions _limits;
    private readonly TimeProvider _time;
    private readonly ITimer _sweep;

    public DeviceBudgets(IOptions<GatewayOptions> options, TimeProvider time)
    {
        _limits = options.Value.Limits;
        _time = time;
        Capacity = Math.Clamp(2 * _limits.MaxConnections, Defaults.MinDeviceBudgets, Defaults.MaxDeviceBudgets);
        _sweep = time.CreateTimer(static s => ((DeviceBudgets)s!).Sweep(), this, Defaults.BudgetSweep, Defaults.BudgetSweep);
    }

    public int Capacity { get; }

    // Counted here: ConcurrentDictionary.Count takes every one of its locks, and this is read on every connect.
    private int _count;

    public int Count => Volatile.Read(ref _count);

    public DeviceBudget For(string deviceId)
    {
        while (true)
        {
            if (_budgets.TryGetValue(deviceId, out var budget)) return budget;
            if (Volatile.Read(ref _count) >= Capacity) return new DeviceBudget(_limits, _time).Drained();
            var fresh = new DeviceBudget(_limits, _time);
            if (_budgets.TryAdd(deviceId, fresh))
            {
                Interlocked.Increment(ref _count);
                return fresh;
            }
        }
    }

    /// <summary>A budget of its own for a connection without a device id (echo).</summary>
    public DeviceBudget Unshared() => new(_limits, _time);

    internal void Sweep()
    {
        foreach (var (id, budget) in _budgets)
        {
            if (budget.IsIdle() && _budgets.TryRemove(new KeyValuePair<string, DeviceBudget>(id, budget))) Interlocked.Decrement(ref _count);
        }
    }

    public void Dispose() => _sweep.Dispose();
}
