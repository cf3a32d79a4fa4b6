using System.Text.Json.Nodes;
using DeviceGate.Cluster;
using DeviceGate.Messages;
using DeviceGate.State;
using DeviceGate.Storage;
using DeviceGate.Tests.Infrastructure;

namespace DeviceGate.Tests.Storage;

/// <summary>The state store seam's contract (issue 15) against SQLite and Redis: versions, If-Match, atomicity, forget.</summary>
public abstract class StateStoreSpec : IAsyncLifetime
{
    private protected IStateStore States { get; set; } = null!;
    private protected IDirectoryStore Directory { get; set; } = null!;

    protected abstract Task OpenAsync();

    public Task InitializeAsync() => OpenAsync();

    public abstract Task DisposeAsync();

    private static readonly DateTimeOffset T0 = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static Func<string, StateEdit> Patch(string patch) => current =>
        new StateEdit(StatePatch.Apply(JsonNode.Parse(current)!.AsObject(), JsonNode.Parse(patch)!.AsObject()).ToJsonString());

    [Fact]
    public async Task A_device_without_state_has_an_empty_document_and_each_change_of_a_part_is_one_version()
    {
        Assert.Equal(StateRecord.Empty, await States.GetStateAsync("st-1"));
        var first = await States.UpdateStateAsync("st-1", StatePart.Desired, Patch("""{"fw":"1.4"}"""), null, T0);
        Assert.Equal((StateWriteOutcome.Written, 1L, 0L), (first.Outcome, first.Record.DesiredVersion, first.Record.ReportedVersion));
        await States.UpdateStateAsync("st-1", StatePart.Reported, Patch("""{"fw":"1.3"}"""), null, T0.AddSeconds(1));
        var same = await States.UpdateStateAsync("st-1", StatePart.Desired, Patch("""{"fw":"1.4"}"""), null, T0.AddSeconds(2));
        Assert.Equal(StateWriteOutcome.Unchanged, same.Outcome);
        var now = await States.GetStateAsync("st-1");
        Assert.Equal(("""{"fw":"1.4"}""", """{"fw":"1.3"}""", 1L, 1L, T0, T0.AddSeconds(1)),
            (now.Desired, now.Reported, now.DesiredVersion, now.ReportedVersion, now.DesiredAt!.Value, now.ReportedAt!.Value));
    }

    [Fact]
    public async Task If_match_refuses_a_stale_version_and_two_racing_writers_with_one_version_get_one_success()
    {
        await States.UpdateStateAsync("st-2", StatePart.Desired, Patch("""{"a":1}"""), null, T0);
        Assert.Equal(StateWriteOutcome.VersionMismatch, (await States.UpdateStateAsync("st-2", StatePart.Desired, Patch("""{"a":2}"""), ifMatch: 7, T0)).Outcome);
        var results = await Task.WhenAll(Enumerable.Range(0, 8).Select(i =>
            States.UpdateStateAsync("st-2", StatePart.Desired, Patch($$"""{"a":{{i + 10}}}"""), ifMatch: 1, T0)));
        Assert.Single(results, r => r.Outcome == StateWriteOutcome.Written);
        Assert.Equal(7, results.Count(r => r.Outcome == StateWriteOutcome.VersionMismatch));
        Assert.Equal(2, (await States.GetStateAsync("st-2")).DesiredVersion);
    }

    [Fact]
    public async Task Concurrent_writers_without_if_match_all_land_one_version_each()
    {
        await Task.WhenAll(Enumerable.Range(0, 10).Select(i => States.UpdateStateAsync("st-3", StatePart.Reported, Patch($$"""{"k{{i}}":{{i}}}"""), null, T0)));
        var state = await States.GetStateAsync("st-3");
        Assert.Equal(10, state.ReportedVersion);
        Assert.Equal(10, JsonNode.Parse(state.Reported)!.AsObject().Count);
    }

    [Fact]
    public async Task A_refused_edit_changes_nothing_the_acked_version_only_grows_and_forget_removes_the_state()
    {
        await States.UpdateStateAsync("st-4", StatePart.Desired, Patch("""{"a":1}"""), null, T0);
        Assert.Equal(StateWriteOutcome.Refused, (await States.UpdateStateAsync("st-4", StatePart.Desired, _ => new StateEdit(null, Refused: true), null, T0)).Outcome);
        await States.AckStateAsync("st-4", 1);
        await States.AckStateAsync("st-4", 0);
        Assert.Equal(1, (await States.GetStateAsync("st-4")).AckedVersion);
        await Directory.ForgetDeviceAsync("st-4");
        Assert.Equal(StateRecord.Empty, await States.GetStateAsync("st-4"));
    }

    // ---- desired-state messages in the outbox (the same store): latest wins -------------------------------------

    private IMessageStore Messages => (IMessageStore)States;

    private static StoredMessage StateMessage(string id, string device, long version) =>
        new(id, device, "server", null, MessageData.Json(System.Text.Encoding.UTF8.GetBytes($$"""{"type":"state","id":"{{id}}","version":{{version}}}""")),
            T0, T0.AddHours(1), StateVersion: version);

    private async Task<string> StatusAsync(string id) => (await Messages.GetAsync(id))!.Status;

    [Fact]
    public async Task A_newer_state_message_supersedes_the_pending_one_and_an_older_or_acked_one_is_stored_superseded()
    {
        await States.UpdateStateAsync("st-5", StatePart.Desired, Patch("""{"a":1}"""), null, T0);
        await States.UpdateStateAsync("st-5", StatePart.Desired, Patch("""{"a":2}"""), null, T0);
        Assert.Equal(AcceptOutcome.Accepted, (await Messages.AcceptAsync(StateMessage("s1", "st-5", 1), null, 100)).Outcome);
        await Messages.AcceptAsync(new StoredMessage("plain", "st-5", "server", null, MessageData.Text("hi"u8.ToArray()), T0, T0.AddHours(1)), null, 100);
        Assert.Equal(AcceptOutcome.Accepted, (await Messages.AcceptAsync(StateMessage("s2", "st-5", 2), null, 100)).Outcome);
        Assert.Equal("superseded", await StatusAsync("s1"));
        Assert.Equal(["queued", "superseded"], (await Messages.GetAsync("s1"))!.History.Select(h => h.Status).ToArray());
        var pending = await Messages.LoadPendingAsync("st-5", T0);
        Assert.Equal([("plain", 0L), ("s2", 2L)], pending.Select(p => (p.Id, p.StateVersion)).ToArray());

        // Late (a version older than the pending one) or already acked: stored superseded at once, nothing pending changes.
        Assert.Equal(AcceptOutcome.Superseded, (await Messages.AcceptAsync(StateMessage("s1b", "st-5", 1), null, 100)).Outcome);
        Assert.Equal("superseded", await StatusAsync("s1b"));
        await Messages.RecordAsync("st-5", "s2", MessageStatus.Acked, final: true, T0);
        await States.AckStateAsync("st-5", 2);
        Assert.Equal(AcceptOutcome.Superseded, (await Messages.AcceptAsync(StateMessage("s2b", "st-5", 2), null, 100)).Outcome);
        Assert.Equal(["plain"], (await Messages.LoadPendingAsync("st-5", T0)).Select(p => p.Id).ToArray());
        Assert.Equal(1, await Directory.CountQueuedAsync("st-5", T0));
    }

    [Fact]
    public async Task State_messages_are_not_held_to_the_outbox_cap()
    {
        await Messages.AcceptAsync(new StoredMessage("p1", "st-6", "server", null, MessageData.Text("x"u8.ToArray()), T0, T0.AddHours(1)), null, 1);
        Assert.Equal(AcceptOutcome.OutboxFull, (await Messages.AcceptAsync(new StoredMessage("p2", "st-6", "server", null, MessageData.Text("y"u8.ToArray()), T0, T0.AddHours(1)), null, 1)).Outcome);
        Assert.Equal(AcceptOutcome.Accepted, (await Messages.AcceptAsync(StateMessage("s1", "st-6", 1), null, 1)).Outcome);
        Assert.Equal(AcceptOutcome.Accepted, (await Messages.AcceptAsync(StateMessage("s2", "st-6", 2), null, 1)).Outcome);
        Assert.Equal(2, await Directory.CountQueuedAsync("st-6", T0));
    }
}

public sealed class SqliteStateStoreSpec : StateStoreSpec
{
    private readonly string _dir = TempFolder.Create();
    private SqliteStore? _store;

    protected override Task OpenAsync()
    {
        _store = new SqliteStore(_dir, "Full");
        (States, Directory) = (_store, _store);
        return Task.CompletedTask;
    }

    public override async Task DisposeAsync()
    {
        if (_store is not null) await _store.DisposeAsync();
        TempFolder.Delete(_dir);
    }
}

public sealed class RedisStateStoreSpec : RedisStateStoreSpecBase
{
    protected override string Configuration => RedisServer.Shared.Configuration;
}

/// <summary>The Redis state store on a Redis Cluster of three primaries.</summary>
public sealed class RedisClusterStateStoreSpec : RedisStateStoreSpecBase
{
    protected override string Configuration => RedisClusterSet.Shared.Configuration;
}

public abstract class RedisStateStoreSpecBase : StateStoreSpec
{
    protected abstract string Configuration { get; }

    private StackExchange.Redis.IConnectionMultiplexer? _redis;

    protected override async Task OpenAsync()
    {
        _redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(Configuration);
        var store = new RedisStore(_redis, new RedisKeys($"state-{Guid.NewGuid():N}:"), TimeSpan.FromDays(1));
        (States, Directory) = (store, store);
    }

    public override async Task DisposeAsync()
    {
        if (_redis is not null) await _redis.DisposeAsync();
    }
}
