namespace DeviceGate.Sessions;

/// <summary>
/// A token bucket on <see cref="TimeProvider"/> timestamps: holds at most <see cref="Burst"/> tokens and earns
/// <see cref="PerSecond"/> a second. A mutable struct kept as a field of its owner, which serialises access.
/// </summary>
internal struct TokenBucket
{
    private double _tokens;
    private long _at;

    public TokenBucket(double perSecond, double burst)
    {
        PerSecond = perSecond;
        Burst = burst;
        _tokens = burst;
    }

    public readonly double PerSecond { get; }
    public readonly double Burst { get; }

    /// <summary>Takes <paramref name="count"/> tokens if the bucket holds them; nothing is taken otherwise.</summary>
    public bool TryTake(long now, TimeProvider time, double count = 1)
    {
        Refill(now, time);
        if (_tokens < count) return false;
        _tokens -= count;
        return true;
    }

    /// <summary>The tokens the bucket holds now.</summary>
    public double Available(long now, TimeProvider time)
    {
        Refill(now, time);
        return _tokens;
    }

    /// <summary>Takes a token even when there is none (the balance goes negative); false when it went below zero.</summary>
    public bool Spend(long now, TimeProvider time)
    {
        Refill(now, time);
        _tokens -= 1;
        return _tokens >= 0;
    }

    /// <summary>Whether the bucket is full again (forgetting it then loses nothing).</summary>
    public bool IsFull(long now, TimeProvider time)
    {
        Refill(now, time);
        return _tokens >= Burst;
    }

    /// <summary>Empties the bucket (a device that gets no burst, only the steady rate).</summary>
    public void Drain(long now)
    {
        _tokens = 0;
        _at = now;
    }

    private void Refill(long now, TimeProvider time)
    {
        if (_at != 0 && now > _at) _tokens = Math.Min(Burst, _tokens + time.GetElapsedTime(_at, now).TotalSeconds * PerSecond);
        _at = now;
    }
}
