using System.Collections.Concurrent;
using DeviceGate.Storage;

namespace DeviceGate.Routing;

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

    public Task AddAsync(string group, string deviceId)
    {
        AddInMemory(group, deviceId);
        return store.SetMembershipAsync(group, deviceId, member: true);
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

    /// <summary>Every group with its member count, in name order.</summary>
    public Task<IReadOnlyList<(string Group, int Members)>> AllAsync() =>
        store is ISharedDirectory shared ? shared.GroupsAsync()
        : Task.FromResult<IReadOnlyList<(string, int)>>(_members.Select(kv => (kv.Key, kv.Value.Count)).OrderBy(g => g.Key, StringComparer.Ordinal).ToList());

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
