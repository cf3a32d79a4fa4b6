using System.Text;
using DeviceGate.Auth;
using DeviceGate.Delivery;
using DeviceGate.Messages;
using DeviceGate.Protocol;
using DeviceGate.Sessions;
using DeviceGate.Configuration;
using Microsoft.Extensions.Time.Testing;

namespace DeviceGate.Tests.Delivery;

/// <summary>The lane alone, on a fake clock and a fake transport: the ack window, the in-flight cap, redelivery, cancel, backlog first.</summary>
public sealed class DeviceLaneTests
{
    private readonly FakeTimeProvider _time = new();
    private readonly FakeTransport _transport = new();
    private readonly Reports _reports = new();
    private static readonly TimeSpan AckTimeout = TimeSpan.FromSeconds(30);

    private sealed class FakeTransport : ISessionTransport
    {
        public readonly List<OutboundMessage> Written = [];
        public (int Code, string Reason)? Closed;
        private int _done;
        public EnqueueResult TryEnqueue(in OutboundMessage message)
        {
            Written.Add(message);
            return EnqueueResult.Queued;
        }
        public bool RequestClose(int code, string reason, bool dropBacklog)
        {
            Closed ??= (code, reason);
            return true;
        }
        public void Abort() { }
        public bool IsClosing => Closed is not null;
        public int CloseCode => Closed?.Code ?? 1006;
        public string CloseReason => Closed?.Reason ?? "";
        public bool ClosedByDevice => false;
        public Task Completion => Task.CompletedTask;

        /// <summary>The writer wrote everything queued so far.</summary>
        public void WriteAll()
        {
            while (_done < Written.Count) Written[_done++].Observer?.OnWritten();
        }

        public List<string> Ids() => Written.Select(m => System.Text.Json.JsonDocument.Parse(m.Payload).RootElement.GetProperty("id").GetString()!).ToList();
    }

    private sealed class Reports : ILaneReports
    {
        public readonly List<(string Id, bool Final)> Written = [];
        public readonly List<string> AckedIds = [];
        public void Sent(string device, DeviceLane.Entry entry, bool final) => Written.Add((entry.Message.Id, final));
        public void Acked(string device, DeviceLane.Entry entry) => AckedIds.Add(entry.Message.Id);
        public void AckedUntracked(string device, string id) { }
    }

    private DeviceLane Lane(int maxInFlight, IReadOnlyList<StoredMessage>? backlog = null, TaskCompletionSource? loading = null, ConnectionMode mode = ConnectionMode.Envelope)
    {
        var session = new DeviceSession("lane-dev", mode, DevicePermissions.Unrestricted,
            new DeviceBudget(new LimitsOptions(), _time), _time.GetUtcNow());
        var lane = new DeviceLane(session, async _ =>
        {
            if (loading is not null) await loading.Task;
            return backlog ?? [];
        }, _reports, maxInFlight, maxWaiting: 100, AckTimeout, _time);
        session.Attach(_transport, lane);
        return lane;
    }

    private static DeviceMessage M(string id) => new(id, "server", null, MessageData.Text(Encoding.UTF8.GetBytes(id)));

    private static DeviceMessage State(string id, long version) =>
        new(id, "server", null, MessageData.Json(Encoding.UTF8.GetBytes($$"""{"type":"state","id":"{{id}}","version":{{version}}}""")), version);

    [Fact]
    public async Task A_newer_state_message_drops_the_older_one_waiting_or_unacked_and_an_older_one_is_ignored()
    {
        var lane = Lane(maxInFlight: 2);
        await lane.StartAsync();
        lane.Push(State("s1", 1), durable: true, expiresAt: null);
        _transport.WriteAll();
        lane.Push(M("a"), durable: true, expiresAt: null);
        // s1 is written and unacked; s2 takes its place in the window (a and s2 in flight).
        lane.Push(State("s2", 2), durable: true, expiresAt: null);
        Assert.Equal(["s1", "a", "s2"], _transport.Ids());
        _transport.WriteAll();
        lane.Push(State("s0", 1), durable: true, expiresAt: null);
        lane.Push(M("b"), durable: true, expiresAt: null); // waits: the window is full
        _time.Advance(AckTimeout);
        // Redelivery: a and s2 again, never s1.
        Assert.Equal(["s1", "a", "s2", "a", "s2"], _transport.Ids());
        lane.Ack("s1"); // superseded: not held, nothing moves
        Assert.Empty(_reports.AckedIds);
        lane.Ack("s2");
        Assert.Equal(["s2"], _reports.AckedIds);
        Assert.Equal("b", _transport.Ids()[^1]);
    }

    [Fact]
    public async Task A_state_message_waiting_behind_the_window_is_replaced_in_place()
    {
        var lane = Lane(maxInFlight: 1);
        await lane.StartAsync();
        lane.Push(M("a"), durable: true, expiresAt: null);
        lane.Push(State("s1", 1), durable: true, expiresAt: null);
        lane.Push(M("b"), durable: true, expiresAt: null);
        lane.Push(State("s2", 2), durable: true, expiresAt: null);
        foreach (var id in new[] { "a", "b", "s2" })
        {
            _transport.WriteAll();
            lane.Ack(id);
        }
        Assert.Equal(["a", "b", "s2"], _transport.Ids());
    }

    [Fact]
    public async Task A_raw_lane_never_writes_state_messages_pushed_or_stored()
    {
        var now = _time.GetUtcNow();
        var stored = new StoredMessage("s1", "lane-dev", "server", null, State("s1", 1).Data, now, now.AddHours(1), StateVersion: 1);
        var lane = Lane(maxInFlight: 4, backlog: [stored], mode: ConnectionMode.Raw);
        await lane.StartAsync();
        Assert.True(lane.Push(State("s2", 2), durable: true, expiresAt: null));
        lane.Push(M("a"), durable: true, expiresAt: null);
        Assert.Equal(["a"], _transport.Written.Select(m => Encoding.UTF8.GetString(m.Payload.Span)).ToArray());
    }

    [Fact]
    public async Task At_most_the_in_flight_window_is_outstanding_and_an_ack_lets_the_next_one_go()
    {
        var lane = Lane(maxInFlight: 2);
        await lane.StartAsync();
        foreach (var id in new[] { "a", "b", "c", "d" }) Assert.True(lane.Push(M(id), durable: true, expiresAt: null));
        Assert.Equal(["a", "b"], _transport.Ids());
        _transport.WriteAll();
        Assert.Equal([("a", false), ("b", false)], _reports.Written);
        lane.Ack("a");
        Assert.Equal(["a"], _reports.AckedIds);
        Assert.Equal(["a", "b", "c"], _transport.Ids());
    }

    [Fact]
    public async Task An_unacked_message_is_sent_again_with_the_same_id_after_the_ack_timeout()
    {
        var lane = Lane(maxInFlight: 4);
        await lane.StartAsync();
        lane.Push(M("once"), durable: true, expiresAt: null);
        _transport.WriteAll();
        _time.Advance(AckTimeout - TimeSpan.FromSeconds(1));
        Assert.Equal(["once"], _transport.Ids());
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(["once", "once"], _transport.Ids());
        lane.Ack("once");
        _time.Advance(AckTimeout * 2);
        Assert.Equal(2, _transport.Written.Count);
    }

    [Fact]
    public async Task A_cancelled_message_that_was_not_written_is_never_written()
    {
        var lane = Lane(maxInFlight: 1);
        await lane.StartAsync();
        foreach (var id in new[] { "a", "b", "c" }) lane.Push(M(id), durable: true, expiresAt: null);
        lane.Cancel("b");
        _transport.WriteAll();
        lane.Ack("a");
        Assert.Equal(["a", "c"], _transport.Ids());
    }

    [Fact]
    public async Task The_stored_backlog_goes_first_then_what_was_pushed_while_it_loaded()
    {
        var loading = new TaskCompletionSource();
        var now = _time.GetUtcNow();
        var backlog = new[] { "s1", "s2" }.Select(id => new StoredMessage(id, "lane-dev", "server", null, MessageData.Text(Encoding.UTF8.GetBytes(id)), now, now.AddHours(1))).ToList();
        var lane = Lane(maxInFlight: 10, backlog, loading);
        var start = lane.StartAsync();
        lane.Push(M("p1"), durable: false, expiresAt: null);
        Assert.Empty(_transport.Written);
        loading.SetResult();
        await start;
        Assert.Equal(["s1", "s2", "p1"], _transport.Ids());
    }

    [Fact]
    public async Task A_ttl_0_message_is_final_once_written_and_not_held_for_its_ack()
    {
        var lane = Lane(maxInFlight: 1);
        await lane.StartAsync();
        lane.Push(M("now-1"), durable: false, expiresAt: null);
        lane.Push(M("now-2"), durable: false, expiresAt: null);
        _transport.WriteAll();
        _transport.WriteAll();
        Assert.Equal([("now-1", true), ("now-2", true)], _reports.Written);
        _time.Advance(AckTimeout * 2);
        Assert.Equal(["now-1", "now-2"], _transport.Ids());
    }
}
