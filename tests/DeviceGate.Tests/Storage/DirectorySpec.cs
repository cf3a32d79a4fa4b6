using DeviceGate.Cluster;
using DeviceGate.Messages;
using DeviceGate.Storage;
using DeviceGate.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;

namespace DeviceGate.Tests.Storage;

/// <summary>The contract of the directory seams, run against the single-node directory (memory over SQLite) and Redis's.</summary>
internal static class Milliseconds
{
    /// <summary>Stores keep times to the millisecond.</summary>
    public static DateTimeOffset TruncateToMs(this DateTimeOffset at) => DateTimeOffset.FromUnixTimeMilliseconds(at.ToUnixTimeMilliseconds());
}

public abstract class DirectorySpec : IAsyncLifetime
{
    private protected IDeviceDirectory Devices { get; set; } = null!;
    private protected IGroupDirectory Groups { get; set; } = null!;

    /// <summary>A fresh, empty directory.</summary>
    protected abstract Task CreateAsync();

    /// <summary>The same data as a restarted process would see it.</summary>
    protected abstract Task ReopenAsync();

    public Task InitializeAsync() => CreateAsync();

    public abstract Task DisposeAsync();

    private static readonly DateTimeOffset T0 = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private async Task EventuallySeenAsync(string device) =>
        await ApiExtensions.EventuallyAsync(async () => (await Devices.LookupAsync(device)).Known, $"{device} known");

    [Fact]
    public async Task Seen_devices_are_known_listed_in_order_and_survive_a_restart()
    {
        foreach (var d in new[] { "kiosk-2", "kiosk-1", "phone-1" }) Devices.Seen(d, T0);
        await EventuallySeenAsync("phone-1");
        await ReopenAsync();
        Assert.Equal((true, T0), await Devices.LookupAsync("kiosk-1"));
        Assert.Equal((false, null), await Devices.LookupAsync("never"));
        Assert.Equal(["kiosk-1", "kiosk-2"], (await Devices.ListAsync("kiosk-", null, 10)).Select(d => d.Device));
        Assert.Equal(["kiosk-2"], (await Devices.ListAsync(null, "kiosk-1", 1)).Select(d => d.Device));
    }

    private static Dictionary<string, string> T(params (string K, string V)[] pairs) => pairs.ToDictionary(p => p.K, p => p.V);

    private static IReadOnlyList<TagFilter> Filter(params string[] texts) => texts.Select(t =>
    {
        Assert.True(TagFilter.TryParse(t, out var f));
        return f;
    }).ToList();

    [Fact]
    public async Task Tags_replace_make_a_device_known_filter_listings_survive_restarts_and_go_with_forget()
    {
        await Devices.SetTagsAsync("kiosk-b", T(("site", "berlin"), ("model", "k2")));
        await Devices.SetTagsAsync("kiosk-a", T(("site", "berlin"), ("model", "k1")));
        await Devices.SetTagsAsync("kiosk-p", T(("site", "paris"), ("model", "k2"), ("zone:floor", "2:east")));
        Assert.True((await Devices.LookupAsync("kiosk-b")).Known);
        await ReopenAsync();
        Assert.Equal(T(("site", "berlin"), ("model", "k2")), await Devices.TagsAsync("kiosk-b"));
        Assert.Equal(["kiosk-a", "kiosk-b"], (await Devices.ListAsync(null, null, 10, Filter("site:berlin"))).Select(d => d.Device));
        Assert.Equal(["kiosk-b"], (await Devices.ListAsync(null, null, 10, Filter("site:berlin", "model:k2"))).Select(d => d.Device));
        Assert.Equal(["kiosk-b"], (await Devices.ListAsync(null, "kiosk-a", 10, Filter("site:berlin"))).Select(d => d.Device));
        // A key holding ':' is found under its own split.
        Assert.Equal(["kiosk-p"], (await Devices.ListAsync(null, null, 10, Filter("zone:floor:2:east"))).Select(d => d.Device));
        Assert.Empty(await Devices.ListAsync(null, null, 10, Filter("site:rome")));

        // Replacing drops the old pairs from the filter; an empty set removes them all (the device stays known).
        await Devices.SetTagsAsync("kiosk-a", T(("site", "paris")));
        Assert.Equal(["kiosk-b"], (await Devices.ListAsync(null, null, 10, Filter("site:berlin"))).Select(d => d.Device));
        await Devices.SetTagsAsync("kiosk-p", T());
        Assert.Empty(await Devices.TagsAsync("kiosk-p"));
        Assert.Equal(["kiosk-a"], (await Devices.ListAsync(null, null, 10, Filter("site:paris"))).Select(d => d.Device));
        Assert.True((await Devices.LookupAsync("kiosk-p")).Known);

        await Devices.ForgetAsync("kiosk-b");
        Assert.Empty(await Devices.TagsAsync("kiosk-b"));
        Assert.Empty(await Devices.ListAsync(null, null, 10, Filter("model:k2")));
        await ReopenAsync();
        Assert.Empty(await Devices.TagsAsync("kiosk-b"));
    }

    [Fact]
    public async Task A_remembered_session_survives_restarts_is_written_over_only_by_its_owner_and_lapses_drops_and_goes_with_forget()
    {
        var now = DateTimeOffset.UtcNow;
        var later = now.AddHours(1);
        Assert.Null(await Devices.RememberedSessionAsync("sensor", now));
        await Devices.RememberSessionAsync("sensor", new RememberedSession("conn-1", "messages:1", later), take: true);
        await ReopenAsync();
        Assert.Equal(new RememberedSession("conn-1", "messages:1", later.TruncateToMs()), await Devices.RememberedSessionAsync("sensor", now));

        // Another owner writes only by taking; the owner itself may change what it keeps.
        await Devices.RememberSessionAsync("sensor", new RememberedSession("conn-0", "rpc:0", later), take: false);
        Assert.Equal("messages:1", (await Devices.RememberedSessionAsync("sensor", now))!.Subscriptions);
        await Devices.RememberSessionAsync("sensor", new RememberedSession("conn-1", "messages:1,rpc:0", later), take: false);
        Assert.Equal("messages:1,rpc:0", (await Devices.RememberedSessionAsync("sensor", now))!.Subscriptions);
        await Devices.RememberSessionAsync("sensor", new RememberedSession("conn-2", "", later), take: true);
        await Devices.RememberSessionAsync("sensor", new RememberedSession("conn-1", "messages:1", later), take: false);
        Assert.Equal(("conn-2", ""), ((await Devices.RememberedSessionAsync("sensor", now))!.Owner, (await Devices.RememberedSessionAsync("sensor", now))!.Subscriptions));
        // Nothing to write over once it is gone.
        await Devices.RememberSessionAsync("never-kept", new RememberedSession("conn-1", "messages:1", later), take: false);
        Assert.Null(await Devices.RememberedSessionAsync("never-kept", now));

        Assert.Null(await Devices.RememberedSessionAsync("sensor", later.AddSeconds(1)));
        await Devices.RememberSessionAsync("lapsed", new RememberedSession("conn-1", "messages:0", now.AddSeconds(-1)), take: true);
        Assert.Null(await Devices.RememberedSessionAsync("lapsed", now));

        Devices.DropSession("sensor");
        Assert.Null(await Devices.RememberedSessionAsync("sensor", now));
        await Devices.RememberSessionAsync("kiosk", new RememberedSession("conn-1", "messages:1", later), take: true);
        await Devices.ForgetAsync("kiosk");
        Assert.Null(await Devices.RememberedSessionAsync("kiosk", now));
        await ReopenAsync();
        Assert.Null(await Devices.RememberedSessionAsync("sensor", now));
        Assert.Null(await Devices.RememberedSessionAsync("kiosk", now));
    }

    [Fact]
    public async Task A_revocation_outlives_forget_and_restarts()
    {
        Devices.Seen("stolen", T0);
        await EventuallySeenAsync("stolen");
        await Devices.RevokeTokensAsync("stolen", T0);
        await Devices.ForgetAsync("stolen");
        Assert.False((await Devices.LookupAsync("stolen")).Known);
        await ReopenAsync();
        Assert.Equal(T0, await Devices.TokensNotBeforeAsync("stolen"));
        Assert.Null(await Devices.TokensNotBeforeAsync("innocent"));
    }

    [Fact]
    public async Task Memberships_are_capped_listed_and_removed_with_the_device()
    {
        Assert.True(await Groups.AddAsync("b-group", "d1", maxGroups: 2));
        Assert.True(await Groups.AddAsync("a-group", "d1", maxGroups: 2));
        Assert.False(await Groups.AddAsync("c-group", "d1", maxGroups: 2));
        Assert.True(await Groups.AddAsync("a-group", "d1", maxGroups: 2));
        Assert.True(await Groups.AddAsync("a-group", "d0", maxGroups: 2));
        await ReopenAsync();
        Assert.Equal(["d0", "d1"], await Groups.MembersAsync("a-group"));
        Assert.Equal(["a-group", "b-group"], await Groups.GroupsOfAsync("d1"));
        Assert.Equal([("a-group", 2), ("b-group", 1)], await Groups.GroupsAsync(null, 10));
        Assert.Equal([("b-group", 1)], await Groups.GroupsAsync("a-group", 10));
        Assert.Empty(await Groups.MembersAsync("c-group"));

        await Groups.RemoveAsync("b-group", "d1");
        Assert.Equal(["a-group"], await Groups.GroupsOfAsync("d1"));
        await Devices.ForgetAsync("d1");
        Assert.Equal(["d0"], await Groups.MembersAsync("a-group"));
        Assert.Empty(await Groups.GroupsOfAsync("d1"));
    }
}

public sealed class LocalDirectorySpec : DirectorySpec
{
    private readonly string _dir = TempFolder.Create();
    private SqliteStore? _store;

    protected override Task CreateAsync() => ReopenAsync();

    protected override async Task ReopenAsync()
    {
        if (_store is not null) await _store.DisposeAsync();
        _store = new SqliteStore(_dir, "Full");
        var directory = new LocalDirectory(_store, NullLogger<LocalDirectory>.Instance);
        await directory.StartingAsync(CancellationToken.None);
        (Devices, Groups) = (directory, directory);
    }

    public override async Task DisposeAsync()
    {
        if (_store is not null) await _store.DisposeAsync();
        TempFolder.Delete(_dir);
    }
}

public sealed class RedisDirectorySpec : RedisDirectorySpecBase
{
    protected override string Configuration => RedisServer.Shared.Configuration;
}

/// <summary>The Redis directory on a Redis Cluster of three primaries (its scripts must keep to one slot each).</summary>
public sealed class RedisClusterDirectorySpec : RedisDirectorySpecBase
{
    protected override string Configuration => RedisClusterSet.Shared.Configuration;
}

public abstract class RedisDirectorySpecBase : DirectorySpec
{
    protected abstract string Configuration { get; }

    private readonly string _prefix = $"dir-{Guid.NewGuid():N}:";
    private StackExchange.Redis.IConnectionMultiplexer? _redis;

    protected override Task CreateAsync() => ReopenAsync();

    protected override async Task ReopenAsync()
    {
        if (_redis is not null) await _redis.DisposeAsync();
        _redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(Configuration);
        var directory = new RedisDirectory(new RedisStore(_redis, new RedisKeys(_prefix), TimeSpan.FromDays(1)), NullLogger<RedisDirectory>.Instance);
        (Devices, Groups) = (directory, directory);
    }

    public override async Task DisposeAsync()
    {
        if (_redis is not null) await _redis.DisposeAsync();
    }
}
