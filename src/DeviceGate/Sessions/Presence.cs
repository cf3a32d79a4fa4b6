
namespace DeviceGate.Sessions;

/// <summary>Where a device is connected: its node, and the epoch of that connection (a fencing token).</summary>
/// <summary>Where a device is connected; <c>Transport</c> is <c>websocket</c> or <c>mqtt</c>, <c>Protocol</c> its mode or MQTT version.</summary>
public sealed record PresenceEntry(string Device, string Node, long Epoch, DateTimeOffset ConnectedAt, string? Transport = null, string? Protocol = null);

/// <summary>
/// Which node holds each device's connection. One node: the local registry. Cluster: Redis, with a lease per node
/// so that a dead node's devices stop counting as present within the lease.
/// </summary>
internal interface IPresence
{
    /// <summary>Records the connection as the device's current one; returns its epoch (higher than any before).</summary>
    Task<long> RegisterAsync(DeviceSession connection);

    /// <summary>Forgets the connection, unless a newer one (higher epoch) has taken over meanwhile.</summary>
    Task UnregisterAsync(DeviceSession connection);

    /// <summary>The device's live connection anywhere, or null.</summary>
    Task<PresenceEntry?> LocateAsync(string device);

    /// <summary>Connected devices in ordinal id order, after <paramref name="after"/>.</summary>
    Task<IReadOnlyList<PresenceEntry>> ListAsync(string? after, int limit);
}

/// <summary>Single node: presence is the local registry.</summary>
internal sealed class LocalPresence(ConnectionRegistry registry, NodeIdentity node) : IPresence
{
    private long _epoch;

    public Task<long> RegisterAsync(DeviceSession connection) => Task.FromResult(Interlocked.Increment(ref _epoch));

    public Task UnregisterAsync(DeviceSession connection) => Task.CompletedTask;

    public Task<PresenceEntry?> LocateAsync(string device) => Task.FromResult(
        registry.TryGet(device, out var c) && !c.IsClosing ? new PresenceEntry(device, node.Id, c.Epoch, c.ConnectedAt, c.TransportName, c.Protocol) : null);

    public Task<IReadOnlyList<PresenceEntry>> ListAsync(string? after, int limit) => Task.FromResult<IReadOnlyList<PresenceEntry>>(
        registry.All
            .Where(c => after is null || string.CompareOrdinal(c.DeviceId, after) > 0)
            .OrderBy(c => c.DeviceId, StringComparer.Ordinal)
            .Take(limit)
            .Select(c => new PresenceEntry(c.DeviceId, node.Id, c.Epoch, c.ConnectedAt, c.TransportName, c.Protocol))
            .ToList());
}
