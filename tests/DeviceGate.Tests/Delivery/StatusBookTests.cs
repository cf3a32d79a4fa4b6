using DeviceGate.Configuration;
using DeviceGate.Delivery;
using DeviceGate.Messages;
using Microsoft.Extensions.Time.Testing;

namespace DeviceGate.Tests.Delivery;

public sealed class StatusBookTests
{
    private readonly FakeTimeProvider _time = new();

    [Fact]
    public void A_final_status_is_kept_for_the_retention_and_a_pending_one_for_good()
    {
        var book = new StatusBook(_time);
        var retention = TimeSpan.FromHours(1);
        book.Add("done", "d");
        book.Add("waiting", "d");
        Assert.True(book.Record("done", MessageStatus.Sent));
        Assert.True(book.Record("done", MessageStatus.Acked));
        Assert.False(book.Record("done", MessageStatus.Acked));
        _time.Advance(retention - TimeSpan.FromSeconds(1));
        Assert.Equal(["queued", "sent", "acked"], book.Get("done", retention)!.History.Select(h => h.Status));
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Null(book.Get("done", retention));
        Assert.Equal(MessageStatus.Queued, book.Get("waiting", retention)!.Status);
    }

    [Fact]
    public void The_oldest_message_is_forgotten_first_once_the_book_is_full()
    {
        var book = new StatusBook(_time);
        var retention = TimeSpan.FromHours(1);
        for (var i = 0; i < Defaults.InMemoryStatuses; i++) book.Add($"m{i}", "d");
        Assert.True(book.Record("m1", MessageStatus.Sent));
        book.Add("newest", "e");
        Assert.Null(book.Get("m0", retention));
        Assert.Equal(MessageStatus.Sent, book.Get("m1", retention)!.Status);
        Assert.True(book.BelongsTo("newest", "e"));
        Assert.False(book.BelongsTo("newest", "d"));
        // Around the ring a second time: each new message takes the place of the oldest one left.
        for (var i = 0; i < Defaults.InMemoryStatuses; i++) book.Add($"n{i}", "d");
        Assert.Null(book.Get("m1", retention));
        Assert.Null(book.Get("newest", retention));
        Assert.NotNull(book.Get("n0", retention));
        Assert.NotNull(book.Get($"n{Defaults.InMemoryStatuses - 1}", retention));
    }

    [Fact]
    public void A_message_added_again_starts_over_and_keeps_one_entry()
    {
        var book = new StatusBook(_time);
        book.Add("m", "d");
        Assert.True(book.Record("m", MessageStatus.Sent));
        Assert.True(book.Record("m", MessageStatus.Acked));
        book.Add("m", "d");
        var record = book.Get("m", TimeSpan.FromHours(1))!;
        Assert.Equal(MessageStatus.Queued, record.Status);
        Assert.Equal(0, record.Attempts);
        Assert.Equal(["queued"], record.History.Select(h => h.Status));
    }

    [Fact]
    public void A_key_is_held_by_one_message_and_freed_when_that_one_was_refused()
    {
        var book = new StatusBook(_time);
        Assert.True(book.TryReserveKey("d/k", "m1", out _));
        Assert.False(book.TryReserveKey("d/k", "m2", out var earlier));
        Assert.Equal("m1", earlier);
        book.ReleaseKey("d/k", "m1");
        Assert.True(book.TryReserveKey("d/k", "m3", out _));
    }
}
