namespace DeviceGate.Sessions;

/// <summary>
/// Runs an action once at a moment that may be months away (a token's <c>exp</c>, a certificate's notAfter). A
/// single timer cannot wait that long (about 49 days at most), so it waits in steps and checks the clock each time.
/// </summary>
internal sealed class ExpiryTimer : IDisposable
{
    /// <summary>The longest single wait; well under the timer's limit.</summary>
    internal static readonly TimeSpan MaxStep = TimeSpan.FromDays(20);

    private readonly TimeProvider _time;
    private readonly DateTimeOffset _at;
    private readonly Action _expired;
    private readonly ITimer _timer;

    private ExpiryTimer(TimeProvider time, DateTimeOffset at, Action expired)
    {
        _time = time;
        _at = at;
        _expired = expired;
        _timer = time.CreateTimer(static s => ((ExpiryTimer)s!).Tick(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        Arm();
    }

    public static ExpiryTimer Start(TimeProvider time, DateTimeOffset at, Action expired) => new(time, at, expired);

    private void Arm()
    {
        var left = _at - _time.GetUtcNow();
        if (left < TimeSpan.Zero) left = TimeSpan.Zero;
        _timer.Change(left > MaxStep ? MaxStep : left, Timeout.InfiniteTimeSpan);
    }

    private void Tick()
    {
        if (_time.GetUtcNow() >= _at) _expired();
        else Arm();
    }

    public void Dispose() => _timer.Dispose();
}
