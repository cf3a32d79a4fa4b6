using DeviceGate.Cluster;
using DeviceGate.Storage;
using DeviceGate.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;

namespace DeviceGate.Tests.Storage;

/// <summary>The contract of the directory seams, run against the single-node directory (memory over SQLite) and Redis's.</summary>
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

public sealed class RedisDirectorySpec : DirectorySpec
{
    private readonly string _prefix = $"dir-{Guid.NewGuid():N}:";
    private StackExchange.Redis.IConnectionMultiplexer? _redis;

    protected override Task CreateAsync() => ReopenAsync();

    protected override async Task ReopenAsync()
    {
        if (_redis is not null) await _redis.DisposeAsync();
        _redis = await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync(RedisServer.Shared.Configuration);
        var directory = new RedisDirectory(new RedisStore(_redis, new RedisKeys(_prefix), TimeSpan.FromDays(1)), NullLogger<RedisDirectory>.Instance);
        (Devices, Groups) = (directory, directory);
    }

    public override async Task DisposeAsync()
    {
        if (_redis is not null) await _redis.DisposeAsync();
    }
}
