using System.Collections.Concurrent;

namespace DeviceGate.Storage;

/// <summary>
/// Devices the gateway knows (connected once, queued for, or put in a group), with when each was last seen
/// connected. Kept in memory for reads and written through to the directory store, which loads it at start.
/// </summary>
internal sealed class DeviceDirectory(IDirectoryStore store, ILogger<DeviceDirectory> logger)
{
    private readonly ConcurrentDictionary<string, DateTimeOffset?> _devices = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, DateTimeOffset> _tokensNotBefore = new(StringComparer.Ordinal);

    public void Load(DirectorySnapshot snapshot)
    {
        foreach (var (id, seen) in snapshot.Devices) _devices[id] = seen;
        foreach (var (id, at) in snapshot.TokensNotBefore) _tokensNotBefore[id] = at;
    }

    /// <summary>Tokens issued before this are refused (null: no revocation). A shared store (cluster) is asked.</summary>
    public async Task<DateTimeOffset?> TokensNotBeforeAsync(string deviceId) =>
        store is ISharedDirectory shared
            ? (await shared.GetDeviceAsync(deviceId).ConfigureAwait(false))?.TokensNotBefore
            : _tokensNotBefore.TryGetValue(deviceId, out var at) ? at : null;

    /// <summary>Whether the device is known and when it was last seen; from the shared store in a cluster.</summary>
    public async Task<(bool Known, DateTimeOffset? LastSeen)> LookupAsync(string deviceId)
    {
        if (store is ISharedDirectory shared)
        {
            var entry = await shared.GetDeviceAsync(deviceId).ConfigureAwait(false);
            return (entry?.Known == true, entry?.LastSeen);
        }
        return _devices.TryGetValue(deviceId, out var seen) ? (true, seen) : (false, null);
    }

    /// <summary>Refuses the device's existing tokens from now on; durable before it returns.</summary>
    public async Task RevokeTokensAsync(string deviceId, DateTimeOffset at)
    {
        await store.RevokeTokensAsync(deviceId, at).ConfigureAwait(false);
        _tokensNotBefore[deviceId] = at;
        _devices.TryAdd(deviceId, null);
    }

    public void Seen(string deviceId, DateTimeOffset at)
    {
        _devices[deviceId] = at;
        Persist(store.SaveLastSeenAsync(deviceId, at));
    }

    /// <summary>Known without having connected (queued for, or put in a group); the store records it with the write.</summary>
    public void Known(string deviceId) => _devices.TryAdd(deviceId, null);

    /// <summary>Known devices by id prefix, ordinal order, paged by <paramref name="after"/>.</summary>
    public Task<IReadOnlyList<(string Device, DateTimeOffset? LastSeen)>> ListAsync(string? prefix, string? after, int limit) =>
        store is ISharedDirectory shared ? shared.DevicesAsync(prefix, after, limit)
        : Task.FromResult<IReadOnlyList<(string, DateTimeOffset?)>>(_devices
            .Where(kv => (prefix is null || kv.Key.StartsWith(prefix, StringComparison.Ordinal)) && (after is null || string.CompareOrdinal(kv.Key, after) > 0))
            .OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Take(limit)
            .Select(kv => (kv.Key, kv.Value))
            .ToList());

    /// <summary>Forgets the device; a revocation of its tokens stays, or forgetting would undo it.</summary>
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
            Log.StoreWriteFailed(logger, e.Message);
        }
    }
}
