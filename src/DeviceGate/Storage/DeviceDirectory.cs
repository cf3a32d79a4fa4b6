using System.Collections.Concurrent;

namespace DeviceGate.Storage;

/// <summary>
/// Devices the gateway knows (connected once, queued for, or put in a group), with when each was last seen
/// connected. Kept in memory for reads and written through to the directory store, which loads it at start.
/// </summary>
internal sealed class DeviceDirectory(IDirectoryStore store, ILogger<DeviceDirectory> logger)
{
    private readonly ConcurrentDictionary<string, DateTimeOffset?> _devices = new(StringComparer.Ordinal);

    public void Load(IReadOnlyDictionary<string, DateTimeOffset?> devices)
    {
        foreach (var (id, seen) in devices) _devices[id] = seen;
    }

    public void Seen(string deviceId, DateTimeOffset at)
    {
        _devices[deviceId] = at;
        Persist(store.SaveLastSeenAsync(deviceId, at));
    }

    /// <summary>Known without having connected (queued for, or put in a group); the store records it with the write.</summary>
    public void Known(string deviceId) => _devices.TryAdd(deviceId, null);

    public bool IsKnown(string deviceId) => _devices.ContainsKey(deviceId);

    public bool TryGetLastSeen(string deviceId, out DateTimeOffset at)
    {
        at = default;
        if (!_devices.TryGetValue(deviceId, out var seen) || seen is null) return false;
        at = seen.Value;
        return true;
    }

    public Task ForgetAsync(string deviceId)
    {
        _devices.TryRemove(deviceId, out _);
        return store.ForgetDeviceAsync(deviceId);
    }

    private async void Persist(Task write)
    {
        try
        {
            await write.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            Hosting.Log.StoreWriteFailed(logger, e.Message);
        }
    }
}
