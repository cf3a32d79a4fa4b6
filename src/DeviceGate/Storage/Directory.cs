namespace DeviceGate.Storage;

/// <summary>
/// Devices the gateway knows (connected once, queued for, put in a group, or revoked) and their token revocations.
/// Implementations: <see cref="LocalDirectory"/> (one node: memory, written through to SQLite, loaded at start) and
/// <c>Cluster.RedisDirectory</c> (every read goes to Redis, since other nodes write too). Contract: writes that
/// return a task are durable when it completes (a store that cannot take them throws
/// <see cref="StoreUnavailableException"/>); <see cref="Seen"/> and <see cref="Known"/> are fire-and-forget; a
/// revocation outlives <see cref="ForgetAsync"/> and restarts.
/// </summary>
internal interface IDeviceDirectory
{
    /// <summary>The device connected or disconnected at <paramref name="at"/> (written in the background).</summary>
    void Seen(string device, DateTimeOffset at);

    /// <summary>Known without having connected (queued for, or put in a group); the store records it with that write.</summary>
    void Known(string device);

    Task<(bool Known, DateTimeOffset? LastSeen)> LookupAsync(string device);

    /// <summary>
    /// Known devices by id prefix, ordinal order, after <paramref name="after"/>; with <paramref name="tags"/>, only
    /// those matching every filter.
    /// </summary>
    Task<IReadOnlyList<(string Device, DateTimeOffset? LastSeen)>> ListAsync(string? prefix, string? after, int limit, IReadOnlyList<TagFilter>? tags = null);

    /// <summary>The device's tags (empty when it has none).</summary>
    Task<IReadOnlyDictionary<string, string>> TagsAsync(string device);

    /// <summary>Replaces the device's tags (empty: removes them) and makes it known; durable before it returns.</summary>
    Task SetTagsAsync(string device, IReadOnlyDictionary<string, string> tags);

    /// <summary>Forgets the device: last-seen, memberships, tags, remembered session, state and outbox. Its revocation stays.</summary>
    Task ForgetAsync(string device);

    /// <summary>The session the device's transport asked to keep between connections, unless it lapsed before <paramref name="now"/> (null then).</summary>
    Task<RememberedSession?> RememberedSessionAsync(string device, DateTimeOffset now);

    /// <summary>
    /// Keeps <paramref name="session"/> until its Until; durable before it returns. With <paramref name="take"/> false,
    /// only when the session kept has the same owner (a connection taken over, or followed by a clean start, writes nothing).
    /// </summary>
    Task RememberSessionAsync(string device, RememberedSession session, bool take);

    /// <summary>A clean start: whatever was kept is dropped (written in the background, like <see cref="Seen"/>).</summary>
    void DropSession(string device);

    /// <summary>Tokens issued before this are refused (null: no revocation).</summary>
    Task<DateTimeOffset?> TokensNotBeforeAsync(string device);

    /// <summary>Refuses the device's existing tokens from now on; durable before it returns.</summary>
    Task RevokeTokensAsync(string device, DateTimeOffset at);
}

/// <summary>
/// Group memberships by device id (members need not be connected), kept across restarts. Same implementations and
/// durability rule as <see cref="IDeviceDirectory"/>. One node: a device's next envelope already sees its own join.
/// </summary>
internal interface IGroupDirectory
{
    /// <summary>False (nothing changed) when the device already is in <paramref name="maxGroups"/> other groups; checked atomically.</summary>
    Task<bool> AddAsync(string group, string device, int maxGroups);

    Task RemoveAsync(string group, string device);

    /// <summary>Members in ordinal order; empty for an unknown group.</summary>
    Task<IReadOnlyList<string>> MembersAsync(string group);

    Task<IReadOnlyList<string>> GroupsOfAsync(string device);

    /// <summary>Groups with their member counts, ordinal name order, after <paramref name="after"/>, at most <paramref name="limit"/>.</summary>
    Task<IReadOnlyList<(string Group, int Members)>> GroupsAsync(string? after, int limit);
}
