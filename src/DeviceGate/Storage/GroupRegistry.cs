using System.Collections.Concurrent;
using DeviceGate.Storage;

namespace DeviceGate.Storage;

/// <summary>
/// Group memberships by device id (members need not be connected). Read from memory on every publish; written
/// through to the directory store so they survive restarts.
/// </summary>
internal sealed class GroupRegistry(IDirectoryStore store)
{
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, byte>> _members = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, byte>> _groupsOfDevice = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public void Load(IEnumerable<(string Group, string Device)> memberships)
    {
        foreach (var (g, d) in memberships) AddInMemory(g, d);
    }

    /// <summary>
    /// Adds a membership (durable when it completes). False when the device already is in <paramref name="maxGroups"/>
    /// groups: nothing changed. The store decides, atomically, so nodes of a cluster cannot together exceed it.
    /// </summary>
    public Task<bool> AddAsync(string group, string deviceId, int maxGroups)
    {
        // A shared (cluster) store checks the cap and adds in one script, so nodes cannot together exceed it.
        if (store is ISharedDirectory) return store.SetMembershipAsync(group, deviceId, member: true, maxGroups);
        // One node: memory first, before this returns, so a device's next envelope already sees its join.
        lock (_gate)
        {
            var groups = _groupsOfDevice.TryGetValue(deviceId, out var g) ? g : null;
            if (groups?.ContainsKey(group) != true && (groups?.Count ?? 0) >= maxGroups) return Task.FromResult(false);
            AddInMemory(group, deviceId);
        }
        return store.SetMembershipAsync(group, deviceId, member: true, maxGroups);
    }

    public Task RemoveAsync(string group, string deviceId)
    {
        RemoveInMemory(group, deviceId);
        return store.SetMembershipAsync(group, deviceId, member: false);
    }

    /// <summary>Drops every membership of a forgotten device (the store forgets them with the device).</summary>
    public void ForgetDevice(string deviceId)
    {
        foreach (var g in GroupsOf(deviceId)) RemoveInMemory(g, deviceId);
    }

    /// <summary>Members in ordinal order; empty for an unknown group. Shared stores (cluster) are asked, as other nodes change them.</summary>
    public Task<IReadOnlyList<string>> MembersAsync(string group) =>
        store is ISharedDirectory shared ? shared.MembersAsync(group)
        : Task.FromResult<IReadOnlyList<string>>(_members.TryGetValue(group, out var m) ? m.Keys.Order(StringComparer.Ordinal).ToArray() : []);

    public Task<IReadOnlyList<string>> GroupsOfAsync(string deviceId) =>
        store is ISharedDirectory shared ? shared.GroupsOfAsync(deviceId)
        : Task.FromResult<IReadOnlyList<string>>(GroupsOf(deviceId));

    /// <summary>Groups with their member counts, in ordinal name order, after <paramref name="after"/>, at most <paramref name="limit"/>.</summary>
    public Task<IReadOnlyList<(string Group, int Members)>> AllAsync(string? after, int limit) =>
        store is ISharedDirectory shared ? shared.GroupsAsync(after, limit)
        : Task.FromResult<IReadOnlyList<(string, int)>>(_members
            .Where(kv => after is null || string.CompareOrdinal(kv.Key, after) > 0)
            .Select(kv => (kv.Key, kv.Value.Count))
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .Take(limit)
            .ToList());

    private IReadOnlyList<string> GroupsOf(string deviceId) =>
        _groupsOfDevice.TryGetValue(deviceId, out var g) ? g.Keys.Order(StringComparer.Ordinal).ToArray() : [];

    private void AddInMemory(string group, string deviceId)
    {
        lock (_gate)
        {
            _members.GetOrAdd(group, _ => new(StringComparer.Ordinal)).TryAdd(deviceId, 0);
            _groupsOfDevice.GetOrAdd(deviceId, _ => new(StringComparer.Ordinal)).TryAdd(group, 0);
        }
    }

    private void RemoveInMemory(string group, string deviceId)
    {
        lock (_gate)
        {
            if (_members.TryGetValue(group, out var members))
            {
                members.TryRemove(deviceId, out _);
                if (members.IsEmpty) _members.TryRemove(group, out _);
            }
            if (_groupsOfDevice.TryGetValue(deviceId, out var groups))
            {
                groups.TryRemove(group, out _);
                if (groups.IsEmpty) _groupsOfDevice.TryRemove(deviceId, out _);
            }
        }
    }
}
