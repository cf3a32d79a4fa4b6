using DeviceGate.Sessions;
using Microsoft.Extensions.Time.Testing;

namespace DeviceGate.Tests.Sessions;

public sealed class ExpiryTimerTests
{
    [Fact]
    public void A_moment_months_away_fires_once_at_that_moment_and_not_before()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var fired = 0;
        using var timer = ExpiryTimer.Start(time, time.GetUtcNow().AddDays(365), () => fired++);
        time.Advance(TimeSpan.FromDays(364) + TimeSpan.FromHours(23));
        Assert.Equal(0, fired);
        time.Advance(TimeSpan.FromHours(1));
        Assert.Equal(1, fired);
        time.Advance(TimeSpan.FromDays(100));
        Assert.Equal(1, fired);
    }

    [Fact]
    public void A_moment_already_past_fires_at_once_and_a_disposed_timer_never()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var fired = 0;
        using (ExpiryTimer.Start(time, time.GetUtcNow().AddSeconds(-5), () => fired++)) time.Advance(TimeSpan.Zero);
        Assert.Equal(1, fired);
        var later = ExpiryTimer.Start(time, time.GetUtcNow().AddMinutes(1), () => fired++);
        later.Dispose();
        time.Advance(TimeSpan.FromMinutes(2));
        Assert.Equal(1, fired);
    }
}
