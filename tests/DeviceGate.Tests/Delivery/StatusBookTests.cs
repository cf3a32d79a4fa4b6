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
