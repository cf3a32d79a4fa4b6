using System.Text;
using DeviceGate.Configuration;
using DeviceGate.Diagnostics;
using DeviceGate.Events;
using DeviceGate.Messages;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace DeviceGate.Tests.Events;

/// <summary>The single node's hub on a fake clock: numbering, the replay ring (count and bytes) and resets.</summary>
public sealed class EventHubTests
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-12-01T00:00:00Z", System.Globalization.CultureInfo.InvariantCulture));

    private EventHub Hub(int ring = 5, long ringBytes = 1_000_000)
    {
        var options = Options.Create(new GatewayOptions { Events = new EventsOptions { ReplayBuffer = ring, ReplayBufferBytes = ringBytes } });
        return new EventHub(options, new NodeIdentity(options), _time, new GatewayMetrics(), new LocalEventLog(_time));
    }

    private static List<GatewayEvent> Drain(EventHub.Subscription s)
    {
        var list = new List<GatewayEvent>();
        while (s.Reader.TryRead(out var e)) list.Add(e);
        return list;
    }

    [Fact]
    public void Ids_start_above_the_start_time_and_increase_by_one()
    {
        var hub = Hub();
        using var s = hub.Subscribe(null, 100, _ => true);
        hub.Connected("a");
        hub.Connected("b");
        var ids = Drain(s).Select(e => e.Id).ToList();
        Assert.Equal(ids[0] + 1, ids[1]);
        Assert.True(ids[0] > _time.GetUtcNow().ToUnixTimeMilliseconds() * 1000);
    }

    [Fact]
    public void A_reader_resumes_from_the_ring_or_gets_a_reset_when_the_ring_no_longer_holds_its_events()
    {
        var hub = Hub(ring: 3);
        var first = hub.LastId;
        for (var i = 0; i < 5; i++) hub.Connected($"d{i}");
        using (var recent = hub.Subscribe(hub.LastId - 2, 100, _ => true))
        {
            Assert.Equal([hub.LastId - 1, hub.LastId], Drain(recent).Select(e => e.Id));
        }
        using (var old = hub.Subscribe(first + 1, 100, _ => true))
        {
            Assert.Equal([EventTypes.Reset], Drain(old).Select(e => e.Type));
        }
        using var fromAnotherLife = hub.Subscribe(hub.LastId + 1000, 100, _ => true);
        Assert.Equal([EventTypes.Reset], Drain(fromAnotherLife).Select(e => e.Type));
    }

    [Fact]
    public void The_ring_is_bounded_in_bytes_too()
    {
        var hub = Hub(ring: 1000, ringBytes: 3000);
        var before = hub.LastId;
        for (var i = 0; i < 10; i++) hub.Message("d", MessageData.Text(Encoding.UTF8.GetBytes(new string('x', 1000))));
        using var all = hub.Subscribe(before, 100, _ => true);
        Assert.Equal([EventTypes.Reset], Drain(all).Select(e => e.Type));
        using var last2 = hub.Subscribe(hub.LastId - 2, 100, _ => true);
        Assert.Equal(2, Drain(last2).Count);
    }

    [Fact]
    public void A_reader_past_its_byte_budget_is_dropped()
    {
        var options = Options.Create(new GatewayOptions { Events = new EventsOptions { SubscriberBufferBytes = 2500 } });
        var metrics = new GatewayMetrics();
        var hub = new EventHub(options, new NodeIdentity(options), _time, metrics, new LocalEventLog(_time));
        using var slow = hub.Subscribe(null, 1000, _ => true);
        for (var i = 0; i < 3; i++) hub.Message("d", MessageData.Text(Encoding.UTF8.GetBytes(new string('y', 1000))));
        Drain(slow);
        Assert.True(slow.Reader.Completion.IsFaulted);
        Assert.IsType<EventHub.DroppedException>(slow.Reader.Completion.Exception!.InnerException);
        Assert.Equal(1, metrics.Value(metrics.EventReadersDropped, "behind"));
    }

    [Fact]
    public async Task A_drop_noticed_after_the_reader_s_request_ended_does_not_bring_the_process_down()
    {
        // The endpoint sets OnDropped to abort its request; the request may be gone (disposed) by the time the
        // thread pool runs it. Were that exception not handled, it would crash the test host (and the server).
        var options = Options.Create(new GatewayOptions { Events = new EventsOptions { SubscriberBuffer = 1 } });
        var hub = new EventHub(options, new NodeIdentity(options), _time, new GatewayMetrics(), new LocalEventLog(_time));
        var ran = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var reader = hub.Subscribe(null, 1, _ => true);
        reader.OnDropped = () =>
        {
            ran.SetResult();
            throw new ObjectDisposedException("IFeatureCollection");
        };
        hub.Connected("a");
        hub.Connected("b");
        await ran.Task.WaitAsync(TimeSpan.FromSeconds(10));
        hub.Connected("c");
        Assert.Equal(0, hub.SubscriberCount);
    }
}
