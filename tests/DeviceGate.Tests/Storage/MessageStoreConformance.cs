using System.Net.WebSockets;
using DeviceGate.Messages;
using DeviceGate.Storage;
using DeviceGate.Tests.Infrastructure;
using DeviceGate.Cluster;

namespace DeviceGate.Tests.Storage;

/// <summary>
/// What every store behind the outbox seam must do. Each implementation (SQLite now, Redis in cluster mode)
/// derives from this class and supplies a fresh, empty store.
/// </summary>
public abstract class MessageStoreConformance : IAsyncLifetime
{
    private IAsyncDisposable? _owner;

    protected IMessageStore Messages { get; private set; } = null!;
    protected IDirectoryStore Directory { get; private set; } = null!;

    /// <summary>A new empty store: both seams (often one object) and what disposes it.</summary>
    protected abstract Task<(IMessageStore Messages, IDirectoryStore Directory, IAsyncDisposable Owner)> CreateAsync();

    /// <summary>The same store as a fresh process would see it (closed and opened again).</summary>
    protected abstract Task<(IMessageStore Messages, IDirectoryStore Directory, IAsyncDisposable Owner)> ReopenAsync();

    public async Task InitializeAsync() => (Messages, Directory, _owner) = await CreateAsync();

    public async Task DisposeAsync()
    {
        if (_owner is not null) await _owner.DisposeAsync();
    }

    protected async Task ReopenStoreAsync()
    {
        await _owner!.DisposeAsync();
        (Messages, Directory, _owner) = await ReopenAsync();
    }

    protected static readonly DateTimeOffset T0 = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);

    protected static StoredMessage Message(string id, string device, string text, DateTimeOffset? expires = null) =>
        new(id, device, "server", null, MessageData.Text(System.Text.Encoding.UTF8.GetBytes(text)), T0, expires ?? T0.AddHours(1));

    [Fact]
    public async Task Accepted_messages_load_in_acceptance_order_with_their_payloads()
    {
        for (var i = 0; i < 5; i++) Assert.Equal(AcceptOutcome.Accepted, (await Messages.AcceptAsync(Message($"m{i}", "d1", $"text {i}"), null, 100)).Outcome);
        await Messages.AcceptAsync(Message("other", "d2", "not d1"), null, 100);
        var binary = new StoredMessage("bin", "d1", "dev-x", "g", MessageData.Binary([0, 255, 7]), T0, T0.AddHours(1));
        await Messages.AcceptAsync(binary, null, 100);

        var pending = await Messages.LoadPendingAsync("d1", T0);
        Assert.Equal(["m0", "m1", "m2", "m3", "m4", "bin"], pending.Select(p => p.Id).ToArray());
        Assert.Equal("text 3", System.Text.Encoding.UTF8.GetString(pending[3].Data.RawPayload.Span));
        var b = pending[5];
        Assert.Equal((DataKind.Binary, WebSocketMessageType.Binary, "dev-x", "g"), (b.Data.Kind, b.Data.RawType, b.From, b.Group));
        Assert.Equal(new byte[] { 0, 255, 7 }, b.Data.Bytes.ToArray());
    }

    [Fact]
    public async Task A_device_that_had_nothing_pending_loads_what_is_queued_afterwards_also_after_a_restart()
    {
        // A store may remember that a device has nothing pending (so connects read nothing): it must forget it
        // as soon as a message is queued for that device, and across a restart.
        Assert.Empty(await Messages.LoadPendingAsync("late", T0));
        Assert.Empty(await Messages.LoadPendingAsync("late", T0));
        await Messages.AcceptAsync(Message("l1", "late", "x"), null, 10);
        Assert.Equal(["l1"], (await Messages.LoadPendingAsync("late", T0)).Select(m => m.Id).ToArray());
        await Messages.RecordAsync("late", "l1", MessageStatus.Acked, final: true, T0);
        Assert.Empty(await Messages.LoadPendingAsync("late", T0));
        await Messages.AcceptAsync(Message("l2", "late", "y"), null, 10);
        await ReopenStoreAsync();
        Assert.Equal(["l2"], (await Messages.LoadPendingAsync("late", T0)).Select(m => m.Id).ToArray());
    }

    [Fact]
    public async Task Json_payloads_keep_their_raw_form()
    {
        using var doc = System.Text.Json.JsonDocument.Parse("\"a string\"");
        var data = MessageData.FromEnvelope(doc.RootElement);
        await Messages.AcceptAsync(new StoredMessage("j", "d1", "a", null, data, T0, T0.AddHours(1)), null, 10);
        var loaded = (await Messages.LoadPendingAsync("d1", T0)).Single().Data;
        Assert.Equal("\"a string\"", System.Text.Encoding.UTF8.GetString(loaded.Bytes.Span));
        Assert.Equal("a string", System.Text.Encoding.UTF8.GetString(loaded.RawPayload.Span));
    }

    [Fact]
    public async Task An_idempotency_key_returns_the_first_message()
    {
        Assert.Equal(AcceptOutcome.Accepted, (await Messages.AcceptAsync(Message("first", "d1", "x"), "key-1", 10)).Outcome);
        var again = await Messages.AcceptAsync(Message("second", "d1", "x"), "key-1", 10);
        Assert.Equal((AcceptOutcome.Duplicate, "first", MessageStatus.Queued), (again.Outcome, again.Id, again.Status));
        Assert.Single(await Messages.LoadPendingAsync("d1", T0));
    }

    [Fact]
    public async Task The_per_device_cap_refuses_without_storing()
    {
        for (var i = 0; i < 3; i++) await Messages.AcceptAsync(Message($"c{i}", "d1", "x"), null, 3);
        Assert.Equal(AcceptOutcome.OutboxFull, (await Messages.AcceptAsync(Message("c3", "d1", "x"), null, 3)).Outcome);
        Assert.Null(await Messages.GetAsync("c3"));
        Assert.Equal(AcceptOutcome.Accepted, (await Messages.AcceptAsync(Message("other", "d2", "x"), null, 3)).Outcome);
        // A final state frees a place.
        await Messages.RecordAsync("d1", "c0", MessageStatus.Acked, final: true, T0);
        Assert.Equal(AcceptOutcome.Accepted, (await Messages.AcceptAsync(Message("c4", "d1", "x"), null, 3)).Outcome);
    }

    [Fact]
    public async Task Sent_stays_pending_until_acked_and_history_is_kept()
    {
        await Messages.AcceptAsync(Message("s", "d1", "x"), null, 10);
        await Messages.RecordAsync("d1", "s", MessageStatus.Sent, final: false, T0.AddSeconds(1));
        await Messages.RecordAsync("d1", "s", MessageStatus.Sent, final: false, T0.AddSeconds(31));
        Assert.Single(await Messages.LoadPendingAsync("d1", T0));
        await Messages.RecordAsync("d1", "s", MessageStatus.Acked, final: true, T0.AddSeconds(32));
        Assert.Empty(await Messages.LoadPendingAsync("d1", T0));
        var record = await Messages.GetAsync("s");
        Assert.NotNull(record);
        Assert.Equal((MessageStatus.Acked, 2, "d1"), (record!.Status, record.Attempts, record.Device));
        Assert.Equal([MessageStatus.Queued, MessageStatus.Sent, MessageStatus.Sent, MessageStatus.Acked], record.History.Select(h => h.Status).ToArray());
        Assert.Equal(T0.AddSeconds(32), record.UpdatedAt);
        // Final states are final.
        await Messages.RecordAsync("d1", "s", MessageStatus.Sent, final: false, T0.AddSeconds(40));
        Assert.Equal(MessageStatus.Acked, (await Messages.GetAsync("s"))!.Status);
    }

    [Fact]
    public async Task Only_queued_messages_can_be_cancelled()
    {
        await Messages.AcceptAsync(Message("q", "d1", "x"), null, 10);
        await Messages.AcceptAsync(Message("s", "d1", "x"), null, 10);
        await Messages.RecordAsync("d1", "s", MessageStatus.Sent, final: false, T0);
        Assert.Equal(CancelOutcome.Cancelled, await Messages.CancelAsync("q", T0));
        Assert.Equal(CancelOutcome.AlreadySent, await Messages.CancelAsync("s", T0));
        Assert.Equal(CancelOutcome.NotFound, await Messages.CancelAsync("nope", T0));
        Assert.Equal(["s"], (await Messages.LoadPendingAsync("d1", T0)).Select(m => m.Id).ToArray());
        Assert.Equal(MessageStatus.Cancelled, (await Messages.GetAsync("q"))!.Status);
    }

    [Fact]
    public async Task Expiry_marks_due_messages_and_hides_them()
    {
        await Messages.AcceptAsync(Message("soon", "d1", "x", T0.AddSeconds(10)), null, 10);
        await Messages.AcceptAsync(Message("later", "d1", "x", T0.AddHours(2)), null, 10);
        Assert.Equal(["later"], (await Messages.LoadPendingAsync("d1", T0.AddSeconds(11))).Select(m => m.Id).ToArray());
        var expired = await Messages.ExpireDueAsync(T0.AddSeconds(11));
        Assert.Equal([("soon", "d1")], expired.ToArray());
        Assert.Empty(await Messages.ExpireDueAsync(T0.AddSeconds(12)));
        Assert.Equal(MessageStatus.Expired, (await Messages.GetAsync("soon"))!.Status);
        Assert.Equal(1, await Directory.CountQueuedAsync("d1", T0.AddSeconds(12)));
    }

    [Fact]
    public async Task Devices_and_memberships_survive_a_reopen_and_forget_removes_them()
    {
        await Directory.SaveLastSeenAsync("d1", T0);
        await Directory.SetMembershipAsync("g1", "d1", member: true);
        await Directory.SetMembershipAsync("g1", "d2", member: true);
        await Directory.SetMembershipAsync("g2", "d2", member: true);
        await Directory.SetMembershipAsync("g2", "d2", member: false);
        await Messages.AcceptAsync(Message("q", "d3", "x"), null, 10);
        await ReopenStoreAsync();

        var snapshot = await Directory.LoadAsync();
        Assert.Equal(T0, snapshot.Devices["d1"]);
        Assert.True(snapshot.Devices.ContainsKey("d2"));
        Assert.Null(snapshot.Devices["d3"]);
        Assert.Equal([("g1", "d1"), ("g1", "d2")], snapshot.Memberships.OrderBy(m => m.Device).ToArray());
        Assert.Single(await Messages.LoadPendingAsync("d3", T0));

        await Directory.ForgetDeviceAsync("d3");
        await Directory.ForgetDeviceAsync("d1");
        var after = await Directory.LoadAsync();
        Assert.False(after.Devices.ContainsKey("d1"));
        Assert.False(after.Devices.ContainsKey("d3"));
        Assert.DoesNotContain(after.Memberships, m => m.Device == "d1");
        Assert.Empty(await Messages.LoadPendingAsync("d3", T0));
    }

    private static StoredMessage FromDevice(string id, string sender, int bytes) =>
        new(id, "target", sender, null, MessageData.Binary(new byte[bytes]), T0, T0.AddHours(1));

    [Fact]
    public async Task A_device_sender_s_pending_bytes_are_capped_and_freed_when_its_messages_finish()
    {
        Assert.Equal(AcceptOutcome.Accepted, (await Messages.AcceptAsync(FromDevice("s1", "dev-s", 600), null, 100, 1000)).Outcome);
        Assert.Equal(AcceptOutcome.QuotaExceeded, (await Messages.AcceptAsync(FromDevice("s2", "dev-s", 600), null, 100, 1000)).Outcome);
        // Another sender, and the server, have budgets of their own (the server's is not counted).
        Assert.Equal(AcceptOutcome.Accepted, (await Messages.AcceptAsync(FromDevice("o1", "dev-o", 600), null, 100, 1000)).Outcome);
        Assert.Equal(AcceptOutcome.Accepted, (await Messages.AcceptAsync(FromDevice("srv", "server", 5000), null, 100, 1000)).Outcome);
        Assert.Null(await Messages.GetAsync("s2"));

        // Acked, cancelled or expired: the bytes count no more, also after a reopen.
        await Messages.RecordAsync("target", "s1", MessageStatus.Acked, final: true, T0);
        await ReopenStoreAsync();
        Assert.Equal(AcceptOutcome.Accepted, (await Messages.AcceptAsync(FromDevice("s3", "dev-s", 600), null, 100, 1000)).Outcome);
        Assert.Equal(CancelOutcome.Cancelled, await Messages.CancelAsync("s3", T0));
        Assert.Equal(AcceptOutcome.Accepted, (await Messages.AcceptAsync(FromDevice("s4", "dev-s", 900), null, 100, 1000)).Outcome);
        Assert.Equal(AcceptOutcome.QuotaExceeded, (await Messages.AcceptAsync(FromDevice("s5", "dev-s", 200), null, 100, 1000)).Outcome);
        await Messages.ExpireDueAsync(T0.AddHours(2));
        Assert.Equal(AcceptOutcome.Accepted, (await Messages.AcceptAsync(FromDevice("s6", "dev-s", 900), null, 100, 1000)).Outcome);
    }

    [Fact]
    public async Task A_refused_accept_does_not_keep_its_idempotency_key()
    {
        await Messages.AcceptAsync(Message("f1", "full-d", "a"), null, 1);
        Assert.Equal(AcceptOutcome.OutboxFull, (await Messages.AcceptAsync(Message("f2", "full-d", "b"), "key-1", 1)).Outcome);
        Assert.Equal(AcceptOutcome.Accepted, (await Messages.AcceptAsync(Message("f3", "other-d", "c"), "key-1", 1)).Outcome);
    }

    [Fact]
    public async Task Memberships_are_capped_per_device_and_a_revocation_outlives_forget()
    {
        Assert.True(await Directory.SetMembershipAsync("g1", "capped", member: true, maxGroups: 2));
        Assert.True(await Directory.SetMembershipAsync("g2", "capped", member: true, maxGroups: 2));
        Assert.False(await Directory.SetMembershipAsync("g3", "capped", member: true, maxGroups: 2));
        Assert.True(await Directory.SetMembershipAsync("g1", "capped", member: true, maxGroups: 2));
        await Directory.SetMembershipAsync("g1", "capped", member: false);
        Assert.True(await Directory.SetMembershipAsync("g3", "capped", member: true, maxGroups: 2));

        await Directory.RevokeTokensAsync("capped", T0);
        await Directory.ForgetDeviceAsync("capped");
        await ReopenStoreAsync();
        var snapshot = await Directory.LoadAsync();
        Assert.False(snapshot.Devices.ContainsKey("capped"));
        Assert.DoesNotContain(snapshot.Memberships, m => m.Device == "capped");
        Assert.Equal(T0, snapshot.TokensNotBefore["capped"]);
    }

    [Fact]
    public async Task Concurrent_accepts_are_all_durable_and_counted()
    {
        await Task.WhenAll(Enumerable.Range(0, 500).Select(i => Messages.AcceptAsync(Message($"p{i}", $"dev{i % 5}", "x"), null, 1000)));
        await ReopenStoreAsync();
        for (var d = 0; d < 5; d++) Assert.Equal(100, await Directory.CountQueuedAsync($"dev{d}", T0));
    }
}

public sealed class SqliteStoreConformance : MessageStoreConformance, IDisposable
{
    private readonly string _dir = TempFolder.Create();

    // SQLite purges by the clock it is given; Redis expires final records itself (RedisStoreConformance).
    [Fact]
    public async Task Purge_forgets_old_final_records_and_keys_only()
    {
        await Messages.AcceptAsync(Message("old", "d1", "x"), "k-old", 10);
        await Messages.RecordAsync("d1", "old", MessageStatus.Acked, final: true, T0.AddMinutes(1));
        await Messages.AcceptAsync(Message("pending", "d1", "x"), null, 10);
        await Messages.PurgeAsync(T0.AddDays(2));
        Assert.Null(await Messages.GetAsync("old"));
        Assert.NotNull(await Messages.GetAsync("pending"));
        Assert.Equal(AcceptOutcome.Accepted, (await Messages.AcceptAsync(Message("new", "d1", "x"), "k-old", 10)).Outcome);
    }



    public void Dispose() => TempFolder.Delete(_dir);

    protected override Task<(IMessageStore, IDirectoryStore, IAsyncDisposable)> CreateAsync() => ReopenAsync();

    protected override Task<(IMessageStore, IDirectoryStore, IAsyncDisposable)> ReopenAsync()
    {
        var store = new SqliteStore(_dir, "Full");
        return Task.FromResult<(IMessageStore, IDirectoryStore, IAsyncDisposable)>((store, store, store));
    }
}

/// <summary>The Redis store on one redis-server.</summary>
public sealed class RedisStoreConformance : RedisConformance
{
    protected override string Configuration => RedisServer.Shared.Configuration;
}

/// <summary>The same store on a Redis Cluster of three primaries: a script whose keys span slots fails here (CROSSSLOT).</summary>
public sealed class RedisClusterStoreConformance : RedisConformance
{
    protected override string Configuration => RedisClusterSet.Shared.Configuration;
}

public abstract class RedisConformance : MessageStoreConformance
{
    private readonly string _prefix = $"test-{Guid.NewGuid():N}:";
    private StackExchange.Redis.IConnectionMultiplexer? _redis;

    protected abstract string Configuration { get; }

    protected override Task<(IMessageStore, IDirectoryStore, IAsyncDisposable)> CreateAsync() => ReopenAsync();

    protected override async Task<(IMessageStore, IDirectoryStore, IAsyncDisposable)> ReopenAsync()
    {
        var redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(Configuration);
        _redis = redis;
        var store = new RedisStore(redis, new DeviceGate.Cluster.RedisKeys(_prefix), TimeSpan.FromDays(1));
        return (store, store, new Closer(redis));
    }

    [Fact]
    public async Task Final_records_and_idempotency_keys_expire_in_redis_after_the_retention_and_pending_ones_do_not()
    {
        await Messages.AcceptAsync(Message("old", "d1", "x"), "k-old", 10);
        await Messages.RecordAsync("d1", "old", MessageStatus.Acked, final: true, T0.AddMinutes(1));
        await Messages.AcceptAsync(Message("pending", "d1", "x"), null, 10);
        var keys = new DeviceGate.Cluster.RedisKeys(_prefix);
        var db = _redis!.GetDatabase();
        var day = TimeSpan.FromDays(1);
        Assert.InRange((await db.KeyTimeToLiveAsync(keys.Message("d1", "old")))!.Value, day - TimeSpan.FromMinutes(1), day);
        Assert.InRange((await db.KeyTimeToLiveAsync(keys.Idempotency("d1", "k-old")))!.Value, day - TimeSpan.FromMinutes(1), day);
        Assert.Null(await db.KeyTimeToLiveAsync(keys.Message("d1", "pending")));
        // The final record keeps its status and history, not its payload.
        Assert.False(await db.HashExistsAsync(keys.Message("d1", "old"), "data"));
        Assert.Equal(MessageStatus.Acked, (await Messages.GetAsync("old"))!.Status);
    }

    private sealed class Closer(StackExchange.Redis.IConnectionMultiplexer redis) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync() => await redis.DisposeAsync();
    }
}
