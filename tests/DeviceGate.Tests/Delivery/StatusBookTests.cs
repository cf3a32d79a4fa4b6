using DeviceGate.Configuration;
using DeviceGate.Delivery;
using DeviceGate.Messages;
using Microsoft.Extensions.Time.Testing;

namespace DeviceGate.Tests.Delivery;

public sealed class StatusBookTests
{
    private readonly FakeTimeProvider _time = new();
    private static readonly string Done = DeviceMessage.NewId(), Waiting = DeviceMessage.NewId(), Newest = DeviceMessage.NewId(), Again = DeviceMessage.NewId();

    /// <summary>A distinct id of NewId's shape.</summary>
    private static string Id(int n) => new Guid(n + 1, 0, 0, new byte[8]).ToString();

    [Fact]
    public void A_final_status_is_kept_for_the_retention_and_a_pending_one_for_good()
    {
        var book = new StatusBook(_time);
        var retention = TimeSpan.FromHours(1);
        book.Add(Done, "d");
        book.Add(Waiting, "d");
        Assert.True(book.Record(Done, MessageStatus.Sent));
        Assert.True(book.Record(Done, MessageStatus.Acked));
        Assert.False(book.Record(Done, MessageStatus.Acked));
        _time.Advance(retention - TimeSpan.FromSeconds(1));
        Assert.Equal(["queued", "sent", "acked"], book.Get(Done, retention)!.History.Select(h => h.Status));
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Null(book.Get(Done, retention));
        Assert.Equal(MessageStatus.Queued, book.Get(Waiting, retention)!.Status);
    }

    [Fact]
    public void The_oldest_message_is_forgotten_first_once_the_book_is_full()
    {
        var book = new StatusBook(_time);
        var retention = TimeSpan.FromHours(1);
        for (var i = 0; i < Defaults.InMemoryStatuses; i++) book.Add(Id(i), "d");
        Assert.True(book.Record(Id(1), MessageStatus.Sent));
        book.Add(Newest, "e");
        Assert.Null(book.Get(Id(0), retention));
        Assert.Equal(MessageStatus.Sent, book.Get(Id(1), retention)!.Status);
        Assert.True(book.BelongsTo(Newest, "e"));
        Assert.False(book.BelongsTo(Newest, "d"));
        // Around the ring a second time: each new message takes the place of the oldest one left.
        for (var i = 0; i < Defaults.InMemoryStatuses; i++) book.Add(Id(1_000_000 + i), "d");
        Assert.Null(book.Get(Id(1), retention));
        Assert.Null(book.Get(Newest, retention));
        Assert.NotNull(book.Get(Id(1_000_000), retention));
        Assert.NotNull(book.Get(Id(1_000_000 + Defaults.InMemoryStatuses - 1), retention));
    }

    [Fact]
    public void A_message_added_again_starts_over_and_keeps_one_entry()
    {
        var book = new StatusBook(_time);
        book.Add(Again, "d");
        Assert.True(book.Record(Again, MessageStatus.Sent));
        Assert.True(book.Record(Again, MessageStatus.Acked));
        book.Add(Again, "d");
        var record = book.Get(Again, TimeSpan.FromHours(1))!;
        Assert.Equal(MessageStatus.Queued, record.Status);
        Assert.Equal(0, record.Attempts);
        Assert.Equal(["queued"], record.History.Select(h => h.Status));
    }

    [Fact]
    public void An_id_this_node_did_not_give_out_is_not_kept()
    {
        var book = new StatusBook(_time);
        var upper = DeviceMessage.NewId().ToUpperInvariant();
        foreach (var id in new[] { "not-a-uuid", upper, Guid.Empty.ToString(), "" })
        {
            book.Add(id, "d");
            Assert.Null(book.Get(id, TimeSpan.FromHours(1)));
            Assert.False(book.Record(id, MessageStatus.Sent));
        }
        Assert.Null(book.Get(upper.ToLowerInvariant(), TimeSpan.FromHours(1)));
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
