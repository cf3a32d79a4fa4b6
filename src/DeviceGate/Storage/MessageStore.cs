
namespace DeviceGate.Storage;

public enum AcceptOutcome { Accepted, Duplicate, OutboxFull, QuotaExceeded, Superseded }

public readonly record struct AcceptResult(AcceptOutcome Outcome, string Id, string Status);

public enum CancelOutcome { Cancelled, NotFound, AlreadySent }

/// <summary>
/// The durable outbox and message statuses (SQLite embedded, Redis in cluster mode). Writes are durable when their
/// task completes; status changes that follow delivery are ordered per store and may be batched.
/// </summary>
public interface IMessageStore
{
    /// <summary>
    /// Stores a message for later delivery, unless the idempotency key names an earlier one, the device's outbox is
    /// full, or the sender's pending messages would hold more than <paramref name="maxSenderBytes"/> payload bytes.
    /// A key is remembered only with a message it stored; callers scope keys to the target device.
    /// <para>Desired-state messages (<see cref="StoredMessage.StateVersion"/> &gt; 0), latest wins: accepting one makes
    /// the device's pending state message <c>superseded</c> (final). When a state message of that version or newer is
    /// pending already, or the device has acked that version, the message is stored <c>superseded</c> at once
    /// (<see cref="AcceptOutcome.Superseded"/>). State messages are not held to <paramref name="maxQueuedPerDevice"/>
    /// (a device has at most one pending).</para>
    /// </summary>
    Task<AcceptResult> AcceptAsync(StoredMessage message, string? idempotencyKey, int maxQueuedPerDevice, long maxSenderBytes = long.MaxValue);

    /// <summary>The device's messages not yet acked, expired or cancelled, in acceptance order.</summary>
    Task<IReadOnlyList<StoredMessage>> LoadPendingAsync(string device, DateTimeOffset now);

    /// <summary>Records a delivery step: <c>sent</c> (still pending when <paramref name="final"/> is false) or <c>acked</c>.</summary>
    Task RecordAsync(string device, string id, string status, bool final, DateTimeOffset at);

    Task<MessageRecord?> GetAsync(string id);

    Task<CancelOutcome> CancelAsync(string id, DateTimeOffset at);

    /// <summary>Marks every pending message past its expiry as expired; returns them (id, device).</summary>
    Task<IReadOnlyList<(string Id, string Device)>> ExpireDueAsync(DateTimeOffset now);

    /// <summary>Forgets final records and idempotency keys older than <paramref name="before"/>.</summary>
    Task PurgeAsync(DateTimeOffset before);

    /// <summary>The device's most recent messages (pending and final), newest first.</summary>
    Task<IReadOnlyList<MessageRecord>> RecentAsync(string device, int limit);
}

/// <summary>Known devices (last seen) and group memberships, kept across restarts.</summary>
public interface IDirectoryStore
{
    Task<DirectorySnapshot> LoadAsync();

    Task SaveLastSeenAsync(string device, DateTimeOffset at);

    /// <summary>
    /// Adds or removes a membership. An add that would make the device a member of more than
    /// <paramref name="maxGroups"/> groups changes nothing and returns false (checked atomically with the add).
    /// </summary>
    Task<bool> SetMembershipAsync(string group, string device, bool member, int maxGroups = int.MaxValue);

    /// <summary>Tokens of this device issued before <paramref name="at"/> are refused from now on, across restarts and forgets.</summary>
    Task RevokeTokensAsync(string device, DateTimeOffset at);

    /// <summary>Replaces the device's tags (empty: none) and makes it known.</summary>
    Task SetTagsAsync(string device, IReadOnlyDictionary<string, string> tags);

    /// <summary>Removes the device's last-seen, memberships, tags, state and outbox. Its token revocation stays.</summary>
    Task ForgetDeviceAsync(string device);

    /// <summary>Unexpired pending messages per device, for <c>queued</c> counts.</summary>
    Task<int> CountQueuedAsync(string device, DateTimeOffset now);

    /// <summary>
    /// Keeps the device's remembered session until its <see cref="RememberedSession.Until"/>. With
    /// <paramref name="take"/> false, only when the one kept has the same owner (checked atomically with the write).
    /// </summary>
    Task PutSessionAsync(string device, RememberedSession session, bool take);

    Task DeleteSessionAsync(string device);
}

/// <summary>
/// What a device's transport keeps between its connections (MQTT: the subscriptions of a client that connected with
/// clean session false or a session expiry), until <see cref="Until"/>. <see cref="Owner"/> names the connection that
/// wrote it, so that a connection taken over since writes nothing.
/// </summary>
public sealed record RememberedSession(string Owner, string Subscriptions, DateTimeOffset Until);

public sealed record DirectorySnapshot(
    IReadOnlyDictionary<string, DateTimeOffset?> Devices,
    IReadOnlyList<(string Group, string Device)> Memberships,
    IReadOnlyDictionary<string, DateTimeOffset> TokensNotBefore,
    IReadOnlyDictionary<string, IReadOnlyDictionary<string, string>> Tags,
    IReadOnlyDictionary<string, RememberedSession> Sessions);

/// <summary>Optional capability of a store: readiness and outbox depth for /readyz and /metrics.</summary>
public interface IStoreHealth
{
    /// <summary>Whether a write could be made right now (false while another process holds the database, or Redis is down).</summary>
    Task<bool> IsWritableAsync();

    /// <summary>Messages stored and not yet acked, expired or cancelled.</summary>
    long PendingMessages { get; }
}
