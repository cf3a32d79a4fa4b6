using System.Collections.Concurrent;
using DeviceGate.Protocol;

namespace DeviceGate.Sessions;

/// <summary>Device id to its one live connection. Lock-free; a newer connection for an id replaces the older one.</summary>
internal sealed class ConnectionRegistry
{
    private readonly ConcurrentDictionary<string, DeviceSession> _devices = new(StringComparer.Ordinal);

    public int Count => _devices.Count;

    public ICollection<DeviceSession> All => _devices.Values;

    /// <summary>
    /// Registers <paramref name="connection"/>, closing any older connection of the same id with 4000. The owner calls
    /// <see cref="Unregister"/> when the connection starts closing.
    /// </summary>
    /// <returns>The connection that was replaced, if any.</returns>
    public DeviceSession? Register(DeviceSession connection)
    {
        while (true)
        {
            if (_devices.TryGetValue(connection.DeviceId, out var old))
            {
                if (_devices.TryUpdate(connection.DeviceId, connection, old))
                {
                    old.RequestClose(CloseCodes.Replaced, CloseReasons.Replaced, dropBacklog: true);
                    return old;
                }
            }
            else if (_devices.TryAdd(connection.DeviceId, connection))
            {
                return null;
            }
        }
    }

    /// <summary>Removes the connection only if it is still the one registered for its id.</summary>
    public void Unregister(DeviceSession connection) =>
        _devices.TryRemove(new KeyValuePair<string, DeviceSession>(connection.DeviceId, connection));

    public bool TryGet(string deviceId, [System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out DeviceSession connection) =>
        _devices.TryGetValue(deviceId, out connection);
}
