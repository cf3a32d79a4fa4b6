using DeviceGate.Connections;
using DeviceGate.Hosting;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using DeviceGate.Configuration;
using DeviceGate.Sessions;
using DeviceGate.Diagnostics;

namespace DeviceGate.Tests.Sessions;

/// <summary>Token buckets and per-device budgets, on a fake clock.</summary>
public sealed class BudgetTests
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-12-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));

    private static LimitsOptions Limits(int perSecond = 10, int burst = 20, int durablePerMinute = 60) => new()
    {
        DeviceMessagesPerSecond = perSecond,
        DeviceMessagesBurst = burst,
        DeviceDurableMessagesPerMinute = durablePerMinute,
    };

    [Fact]
    public void A_bucket_starts_full_spends_and_refills_at_its_rate_up_to_the_burst()
    {
        var bucket = new TokenBucket(perSecond: 2, burst: 4);
        for (var i = 0; i < 4; i++) Assert.True(bucket.TryTake(_time.GetTimestamp(), _time));
        Assert.False(bucket.TryTake(_time.GetTimestamp(), _time));
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(bucket.TryTake(_time.GetTimestamp(), _time));
        Assert.True(bucket.TryTake(_time.GetTimestamp(), _time));
        Assert.False(bucket.TryTake(_time.GetTimestamp(), _time));
        _time.Advance(TimeSpan.FromHours(1));
        Assert.True(bucket.IsFull(_time.GetTimestamp(), _time));
        Assert.False(bucket.TryTake(_time.GetTimestamp(), _time, count: 5)); // never more than the burst
        Assert.True(bucket.TryTake(_time.GetTimestamp(), _time, count: 4));
    }

    [Fact]
    public void Spending_past_empty_goes_negative_and_must_be_earned_back()
    {
        var bucket = new TokenBucket(perSecond: 1, burst: 1);
        Assert.True(bucket.Spend(_time.GetTimestamp(), _time));
        Assert.False(bucket.Spend(_time.GetTimestamp(), _time));
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.False(bucket.TryTake(_time.GetTimestamp(), _time)); // back to 0, not 1
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(bucket.TryTake(_time.GetTimestamp(), _time));
    }

    [Fact]
    public void A_raw_device_over_its_rate_waits_one_refill_at_a_time_and_is_closed_only_when_held_past_the_bound()
    {
        var budget = new DeviceBudget(new LimitsOptions { DeviceMessagesPerSecond = 4, DeviceMessagesBurst = 2, ThrottledCloseAfter = TimeSpan.FromSeconds(10) }, _time);
        Assert.Null(budget.Throttle(out _));
        Assert.Null(budget.Throttle(out _));
        // Empty: wait a quarter second (one token at 4/s), then it goes through.
        Assert.Equal(TimeSpan.FromSeconds(0.25), budget.Throttle(out var close));
        Assert.False(close);
        _time.Advance(TimeSpan.FromSeconds(0.25));
        Assert.Null(budget.Throttle(out _));
        // Kept at the rate for 10 s: still held (no spare token ever), not closed yet; past 10 s, closed.
        for (var i = 0; i < 40; i++)
        {
            Assert.NotNull(budget.Throttle(out close));
            Assert.False(close);
            _time.Advance(TimeSpan.FromSeconds(0.25));
            Assert.Null(budget.Throttle(out _));
        }
        _time.Advance(TimeSpan.FromSeconds(0.1));
        Assert.NotNull(budget.Throttle(out close));
        Assert.True(close);
    }

    [Fact]
    public void A_raw_device_that_slows_below_its_rate_is_no_longer_held()
    {
        var budget = new DeviceBudget(new LimitsOptions { DeviceMessagesPerSecond = 4, DeviceMessagesBurst = 2, ThrottledCloseAfter = TimeSpan.FromSeconds(1) }, _time);
        budget.Throttle(out _);
        budget.Throttle(out _);
        Assert.NotNull(budget.Throttle(out _)); // held from now
        // Half a second idle: two tokens again, so the next message finds one to spare: the hold ends.
        _time.Advance(TimeSpan.FromSeconds(0.5));
        Assert.Null(budget.Throttle(out _));
        _time.Advance(TimeSpan.FromSeconds(2));
        budget.Throttle(out _);
        budget.Throttle(out _);
        Assert.NotNull(budget.Throttle(out var close));
        Assert.False(close); // a new hold, not the old one's 2.5 s
    }

    [Fact]
    public void A_device_over_its_rate_is_dropped_then_closed_past_the_second_budget()
    {
        var budget = new DeviceBudget(Limits(perSecond: 1, burst: 3), _time);
        var verdicts = Enumerable.Range(0, 7).Select(_ => budget.TakeMessage()).ToList();
        Assert.Equal([DeviceBudget.Verdict.Allowed, DeviceBudget.Verdict.Allowed, DeviceBudget.Verdict.Allowed,
            DeviceBudget.Verdict.Dropped, DeviceBudget.Verdict.Dropped, DeviceBudget.Verdict.Dropped, DeviceBudget.Verdict.Close], verdicts);
    }

    [Fact]
    public void The_durable_quota_takes_a_group_publish_whole_or_not_at_all()
    {
        var budget = new DeviceBudget(Limits(durablePerMinute: 10), _time);
        Assert.False(budget.TryTakeDurable(11));
        Assert.True(budget.TryTakeDurable(8));
        Assert.False(budget.TryTakeDurable(3));
        Assert.True(budget.TryTakeDurable(2));
        _time.Advance(TimeSpan.FromSeconds(30)); // 10 a minute: 5 earned
        Assert.True(budget.TryTakeDurable(5));
        Assert.False(budget.TryTakeDurable(1));
    }

    [Fact]
    public void Budgets_are_shared_per_device_and_forgotten_only_once_refilled()
    {
        using var budgets = new DeviceBudgets(Options.Create(new GatewayOptions { Limits = Limits(perSecond: 1, burst: 2) }), _time);
        var first = budgets.For("d1");
        Assert.Same(first, budgets.For("d1"));
        first.TakeMessage();
        first.TakeMessage();
        _time.Advance(TimeSpan.FromSeconds(10)); // the sweep runs, but d1 has earned its two tokens back only now
        Assert.Equal(0, budgets.Count);
        var second = budgets.For("d1");
        Assert.NotSame(first, second);
        second.TakeMessage();
        _time.Advance(TimeSpan.FromMilliseconds(100));
        budgets.Sweep();
        Assert.Same(second, budgets.For("d1")); // not refilled: kept, so a reconnect does not refill it
        Assert.Equal(DeviceBudget.Verdict.Allowed, second.TakeMessage());
        Assert.Equal(DeviceBudget.Verdict.Dropped, budgets.For("d1").TakeMessage());
    }

    [Fact]
    public void A_full_table_hands_out_drained_budgets_that_only_earn_the_steady_rate()
    {
        var limits = Limits(perSecond: 1, burst: 100);
        limits.MaxConnections = 1; // the table then holds its minimum, 10,000
        using var budgets = new DeviceBudgets(Options.Create(new GatewayOptions { Limits = limits }), _time);
        for (var i = 0; i < budgets.Capacity; i++) budgets.For($"d{i}").TakeMessage();
        var overflow = budgets.For("one-too-many");
        Assert.Equal(DeviceBudget.Verdict.Dropped, overflow.TakeMessage());
        Assert.Equal(budgets.Capacity, budgets.Count);
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(DeviceBudget.Verdict.Allowed, overflow.TakeMessage());
    }

    [Fact]
    public void The_log_limiter_lets_one_line_per_key_per_interval_through_and_counts_the_rest()
    {
        var limiter = new LogLimiter(_time);
        Assert.True(limiter.ShouldLog("a", out var suppressed));
        Assert.Equal(0, suppressed);
        for (var i = 0; i < 5; i++) Assert.False(limiter.ShouldLog("a", out _));
        Assert.True(limiter.ShouldLog("b", out _));
        _time.Advance(Defaults.LogSummaryInterval);
        Assert.True(limiter.ShouldLog("a", out suppressed));
        Assert.Equal(5, suppressed);
    }
}
