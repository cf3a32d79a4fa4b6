using System.Collections.Concurrent;

namespace DeviceGate.Storage;

/// <summary>Devices the gateway has seen, with the last time each was seen connected. In memory for now.</summary>
internal sealed class DeviceDirectory
{
    private readonly ConcurrentDictionary<string, DateTimeOffset> _lastSeen = new(StringComparer.Ordinal);

    public void Seen(string deviceId, DateTimeOffset at) => _lastSeen[deviceId] = at;

    public bool TryGetLastSeen(string deviceId, out DateTimeOffset at) => _lastSeen.TryGetValue(deviceId, out at);
}
