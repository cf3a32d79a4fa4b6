using System.Collections.Concurrent;

namespace DeviceGate.Storage;

/// <summary>
/// The directory of a single node: devices, revocations and memberships in memory for reads, written through to the
/// embedded store, and loaded from it before the server listens.
/// </summary>
internal sealed class LocalDirectory(IDirectoryStore store, ILogger<LocalDirectory> logger) : IDeviceDirectory, IGroupDirectory, IHostedLifecycleService
{
    private readonly ConcurrentDictionary<string, DateTimeOffset?> _devices = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DateTimeOffset> _tokensNotBefore = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, IReadOnlyDictionary<string, string>> _tags = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, RememberedSession> _sessions = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SortedSet<string>> _members = new(StringComparer.Ordinal);
    private readonly Dictionary<string, SortedSet<string>> _groupsOfDevice = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public async Task StartingAsync(CancellationToken cancellationToken)
    {
        var snapshot = await store.LoadAsync().ConfigureAwait(false);
        foreach (var (id, seen) in snapshot.Devices) _devices[id] = seen;
        foreach (var (id, at) in snapshot.TokensNotBefore) _tokensNotBefore[id] = at;
        foreach (var (id, tags) in snapshot.Tags) _tags[id] = tags;
        foreach (var (id, session) in snapshot.Sessions) _sessions[id] = session;
        lock (_gate)
        {
            foreach (var (g, d) in snapshot.Memberships) AddInMemory(g, d);
        }
    }

    // ---- devices ------------------------------------------------------------------------------------------------

    public void Seen(string device, DateTimeOffset at)
    {
        _devices[device] = at;
        store.SaveLastSeenAsync(device, at).LogFailure(logger);
    }

    public void Known(string device) => _devices.TryAdd(device, null);

    public Task<(bool Known, DateTimeOffset? LastSeen)> LookupAsync(string device) =>
        Task.FromResult(_devices.TryGetValue(device, out var seen) ? (true, seen) : (false, (DateTimeOffset?)null));

    public Task<IReadOnlyList<(string Device, DateTimeOffset? LastSeen)>> ListAsync(string? prefix, string? after, int limit, IReadOnlyList<TagFilter>? tags = null) =>
        Task.FromResult<IReadOnlyList<(string, DateTimeOffset?)>>(_devices
            .Where(kv => (prefix is null || kv.Key.StartsWith(prefix, StringComparison.Ordinal)) && (after is null || string.CompareOrdinal(kv.Key, after) > 0)
                && (tags is not { Count: > 0 } || TagFilter.MatchesAll(tags, _tags.GetValueOrDefault(kv.Key, Tags.None))))
            .OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Take(limit)
            .Select(kv => (kv.Key, kv.Value))
            .ToList());

    public Task<IReadOnlyDictionary<string, string>> TagsAsync(string device) => Task.FromResult(_tags.GetValueOrDefault(device, Tags.None));

    public async Task SetTagsAsync(string device, IReadOnlyDictionary<string, string> tags)
    {
        await store.SetTagsAsync(device, tags).ConfigureAwait(false);
        if (tags.Count == 0) _tags.TryRemove(device, out _);
        else _tags[device] = new Dictionary<string, string>(tags, StringComparer.Ordinal);
        _devices.TryAdd(device, null);
    }

    public Task<RememberedSession?> RememberedSessionAsync(string device, DateTimeOffset now) =>
        Task.FromResult(_sessions.TryGetValue(device, out var kept) && kept.Until > now ? kept : null);

    public async Task RememberSessionAsync(string device, RememberedSession session, bool take)
    {
        // The owner check is made again by the store, atomically with its write; memory follows what the store did.
        if (!take && (!_sessions.TryGetValue(device, out var kept) || kept.Owner != session.Owner)) return;
        await store.PutSessionAsync(device, session, take).ConfigureAwait(false);
        if (take || (_sessions.TryGetValue(device, out var current) && current.Owner == session.Owner)) _sessions[device] = session;
    }

    public void DropSession(string device)
    {
        // Most devices never kept one: nothing to write for them.
        if (_sessions.TryRemove(device, out _)) store.DeleteSessionAsync(device).LogFailure(logger);
    }

    public Task ForgetAsync(string device)
    {
        _devices.TryRemove(device, out _);
        _tags.TryRemove(device, out _);
        _sessions.TryRemove(device, out _);
        lock (_gate)
        {
            foreach (var g in GroupsOf(device)) RemoveInMemory(g, device);
        }
        return store.ForgetDeviceAsync(device);
    }

    public Task<DateTimeOffset?> TokensNotBeforeAsync(string device) =>
        Task.FromResult(_tokensNotBefore.TryGetValue(device, out var at) ? at : (DateTimeOffset?)null);

    public async Task RevokeTokensAsync(string device, DateTimeOffset at)
    {
        await store.RevokeTokensAsync(device, at).ConfigureAwait(false);
        _tokensNotBefore[device] = at;
        _devices.TryAdd(device, null);
    }

    // ---- groups -------------------------------------------------------------------------------------------------

    public Task<bool> AddAsync(string group, string device, int maxGroups)
    {
        // Memory first, before this returns, so a device's next envelope already sees its join.
        lock (_gate)
        {
            var groups = _groupsOfDevice.GetValueOrDefault(device);
            if (groups?.Contains(group) != true && (groups?.Count ?? 0) >= maxGroups) return Task.FromResult(false);
            AddInMemory(group, device);
        }
        return store.SetMembershipAsync(group, device, member: true, maxGroups);
    }

    public Task RemoveAsync(string group, string device)
    {
        lock (_gate) RemoveInMemory(group, device);
        return store.SetMembershipAsync(group, device, member: false);
    }

    public Task<IReadOnlyList<string>> MembersAsync(string group)
    {
        lock (_gate) return Task.FromResult<IReadOnlyList<string>>(_members.TryGetValue(group, out var m) ? m.ToArray() : []);
    }

    public Task<IReadOnlyList<string>> GroupsOfAsync(string device)
    {
        lock (_gate) return Task.FromResult(GroupsOf(device));
    }

    public Task<IReadOnlyList<(string Group, int Members)>> GroupsAsync(string? after, int limit)
    {
        lock (_gate)
        {
            return Task.FromResult<IReadOnlyList<(string, int)>>(_members
                .Where(kv => after is null || string.CompareOrdinal(kv.Key, after) > 0)
                .OrderBy(kv => kv.Key, StringComparer.Ordinal)
                .Take(limit)
                .Select(kv => (kv.Key, kv.Value.Count))
                .ToList());
        }
    }

    private IReadOnlyList<string> GroupsOf(string device) => _groupsOfDevice.TryGetValue(device, out var g) ? g.ToArray() : [];

    private void AddInMemory(string group, string device)
    {
        if (!_members.TryGetValue(group, out var members)) _members[group] = members = new SortedSet<string>(StringComparer.Ordinal);
        members.Add(device);
        if (!_groupsOfDevice.TryGetValue(device, out var groups)) _groupsOfDevice[device] = groups = new SortedSet<string>(StringComparer.Ordinal);
        groups.Add(group);
    }

    private void RemoveInMemory(string group, string device)
    {
        if (_members.TryGetValue(group, out var members) && members.Remove(device) && members.Count == 0) _members.Remove(group);
        if (_groupsOfDevice.TryGetValue(device, out var groups) && groups.Remove(group) && groups.Count == 0) _groupsOfDevice.Remove(device);
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
