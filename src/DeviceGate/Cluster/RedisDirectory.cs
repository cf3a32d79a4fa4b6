using System.Collections.Concurrent;
using DeviceGate.Storage;

namespace DeviceGate.Cluster;

/// <summary>
/// The directory of a cluster node: every read goes to Redis (other nodes change it), writes go through
/// <see cref="RedisStore"/>'s scripts (a membership cap is checked in the same script as the add).
/// </summary>
internal sealed class RedisDirectory(RedisStore store, ILogger<RedisDirectory> logger) : IDeviceDirectory, IGroupDirectory
{
    public void Seen(string device, DateTimeOffset at) => store.SaveLastSeenAsync(device, at).LogFailure(logger);

    // The store marks a device known with the write that makes it so (a queued message, a membership).
    public void Known(string device)
    {
    }

    public async Task<(bool Known, DateTimeOffset? LastSeen)> LookupAsync(string device)
    {
        var entry = await store.GetDeviceAsync(device).ConfigureAwait(false);
        return (entry?.Known == true, entry?.LastSeen);
    }

    public Task<IReadOnlyList<(string Device, DateTimeOffset? LastSeen)>> ListAsync(string? prefix, string? after, int limit, IReadOnlyList<TagFilter>? tags = null) =>
        store.DevicesAsync(prefix, after, limit, tags);

    public Task<IReadOnlyDictionary<string, string>> TagsAsync(string device) => store.TagsAsync(device);

    public Task SetTagsAsync(string device, IReadOnlyDictionary<string, string> tags) => store.SetTagsAsync(device, tags);

    public Task ForgetAsync(string device) => store.ForgetDeviceAsync(device);

    public Task<RememberedSession?> RememberedSessionAsync(string device, DateTimeOffset now) => store.GetSessionAsync(device, now);

    public Task RememberSessionAsync(string device, RememberedSession session, bool take) => store.PutSessionAsync(device, session, take);

    public void DropSession(string device) => store.DeleteSessionAsync(device).LogFailure(logger);

    public async Task<DateTimeOffset?> TokensNotBeforeAsync(string device) => (await store.GetDeviceAsync(device).ConfigureAwait(false))?.TokensNotBefore;

    public Task RevokeTokensAsync(string device, DateTimeOffset at) => store.RevokeTokensAsync(device, at);

    public Task<bool> AddAsync(string group, string device, int maxGroups) => store.SetMembershipAsync(group, device, member: true, maxGroups);

    public Task RemoveAsync(string group, string device) => store.SetMembershipAsync(group, device, member: false);

    public Task<IReadOnlyList<string>> MembersAsync(string group) => store.MembersAsync(group);

    public Task<IReadOnlyList<string>> GroupsOfAsync(string device) => store.GroupsOfAsync(device);

    public Task<IReadOnlyList<(string Group, int Members)>> GroupsAsync(string? after, int limit) => store.GroupsAsync(after, limit);
}
