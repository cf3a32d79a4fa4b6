using System.Collections.Concurrent;

namespace DeviceGate.Routing;

/// <summary>Group memberships by device id (members need not be connected). In memory for now.</summary>
internal sealed class GroupRegistry
{
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, byte>> _members = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, byte>> _groupsOfDevice = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public bool Add(string group, string deviceId)
    {
        lock (_gate)
        {
            var added = _members.GetOrAdd(group, _ => new(StringComparer.Ordinal)).TryAdd(deviceId, 0);
            _groupsOfDevice.GetOrAdd(deviceId, _ => new(StringComparer.Ordinal)).TryAdd(group, 0);
            return added;
        }
    }

    public bool Remove(string group, string deviceId)
    {
        lock (_gate)
        {
            var removed = false;
            if (_members.TryGetValue(group, out var members))
            {
                removed = members.TryRemove(deviceId, out _);
                if (members.IsEmpty) _members.TryRemove(group, out _);
            }
            if (_groupsOfDevice.TryGetValue(deviceId, out var groups))
            {
                groups.TryRemove(group, out _);
                if (groups.IsEmpty) _groupsOfDevice.TryRemove(deviceId, out _);
            }
            return removed;
        }
    }

    /// <summary>Members in ordinal order; empty for an unknown group.</summary>
    public IReadOnlyList<string> Members(string group) =>
        _members.TryGetValue(group, out var m) ? m.Keys.Order(StringComparer.Ordinal).ToArray() : [];

    public IReadOnlyList<string> GroupsOf(string deviceId) =>
        _groupsOfDevice.TryGetValue(deviceId, out var g) ? g.Keys.Order(StringComparer.Ordinal).ToArray() : [];

    public bool IsMemberAnywhere(string deviceId) => _groupsOfDevice.ContainsKey(deviceId);
}
