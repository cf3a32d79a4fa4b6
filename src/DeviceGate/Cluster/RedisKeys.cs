using StackExchange.Redis;

namespace DeviceGate.Cluster;

/// <summary>Every Redis key and channel name, built in one place, all under the configured prefix.</summary>
internal sealed class RedisKeys(string prefix)
{
    public string Prefix { get; } = prefix;

    // Outbox and statuses
    public RedisKey Message(string id) => $"{Prefix}msg:{id}";
    public RedisKey Outbox(string device) => $"{Prefix}outbox:{device}";
    public RedisKey Expiry => $"{Prefix}expiry";
    public RedisKey Sequence => $"{Prefix}seq";
    public RedisKey Idempotency(string key) => $"{Prefix}idem:{key}";
    public RedisKey FinalMessages => $"{Prefix}final";
    public RedisKey IdempotencyIndex => $"{Prefix}idem-index";
    public RedisKey Recent(string device) => $"{Prefix}recent:{device}";
    public RedisKey Stats => $"{Prefix}stats";

    /// <summary>Payload bytes of a device sender's pending messages (DeviceGate:Limits:DeviceStoredBytes).</summary>
    public RedisKey SenderBytes(string sender) => $"{Prefix}sender-bytes:{sender}";

    /// <summary>A random value written once per Redis data set: when it vanishes or changes, Redis lost its data.</summary>
    public RedisKey Instance => $"{Prefix}instance";

    // Directory
    public RedisKey Devices => $"{Prefix}devices";

    /// <summary>Known device ids (a sorted set read by value), for listings by cursor and prefix.</summary>
    public RedisKey DeviceIndex => $"{Prefix}device-index";
    public RedisKey TokensNotBefore => $"{Prefix}tokens-not-before";
    public RedisKey Group(string group) => $"{Prefix}group:{group}";
    public RedisKey GroupsOf(string device) => $"{Prefix}groups-of:{device}";
    public RedisKey GroupNames => $"{Prefix}groups";

    // Device state (desired, reported, versions)
    public RedisKey State(string device) => $"{Prefix}state:{device}";

    // Tags: one hash per device, and per key=value the set of devices that have it (for the tag filter).
    public RedisKey Tags(string device) => $"{Prefix}tags:{device}";
    public string TaggedPrefix => $"{Prefix}tagged:";
    public RedisKey Tagged(string key, string value) => $"{TaggedPrefix}{key}={value}";

    // What a device's transport keeps between connections (MQTT subscriptions): a hash that Redis expires itself.
    public RedisKey Session(string device) => $"{Prefix}session:{device}";

    // Presence
    /// <summary>Where the device is connected: <c>node|epoch|connectedAt|transport|protocol</c>.</summary>
    public RedisKey DevicePresence(string device) => $"{Prefix}presence:{device}";

    /// <summary>The devices a node holds (a sorted set read by value), for listings and counts.</summary>
    public RedisKey NodeDevices(string node) => $"{Prefix}node:{node}:devices";
    public RedisKey Epoch(string device) => $"{Prefix}epoch:{device}";
    public RedisKey NodeLease(string node) => $"{Prefix}node:{node}:lease";
    /// <summary>Every node id that ever renewed a lease here (live ones have a lease key).</summary>
    public RedisKey Nodes => $"{Prefix}nodes";

    /// <summary>Devices on <paramref name="node"/> that another node stored a message for and could not reach (UndeliveredHints).</summary>
    public RedisKey Undelivered(string node) => $"{Prefix}undelivered:{node}";

    // Events: one hash tag, so the append script (counter, stream, shard channel) stays in one slot of a Redis Cluster.
    public RedisKey EventSequence => $"{Prefix}{{events}}:seq";
    public RedisKey EventStream => $"{Prefix}{{events}}:stream";

    // Channels. A node's own channel and the events channel are shard channels (SPUBLISH/SSUBSCRIBE): in a Redis
    // Cluster a message to one node goes through one shard, not every one; broadcast is one classic channel.
    public RedisChannel NodeChannel(string node) => RedisChannel.Sharded($"{Prefix}{{node:{node}}}:channel");
    public RedisChannel BroadcastChannel => RedisChannel.Literal($"{Prefix}broadcast");
    public RedisChannel EventsChannel => RedisChannel.Sharded($"{Prefix}{{events}}:channel");
}
