using StackExchange.Redis;

namespace DeviceGate.Cluster;

/// <summary>Every Redis key and channel name, built in one place, all under the configured prefix.</summary>
internal sealed class RedisKeys(string prefix)
{
    public string Prefix { get; } = prefix;

    // Outbox and statuses
    public RedisKey Message(string id) => $"{Prefix}msg:{id}";
    // Keys of one device carry the device id as their hash tag ({device}), so a script on one device's keys stays in
    // one slot of a Redis Cluster. RedisStore's Lua builds the outbox and sender-bytes names of a device it reads from
    // a message hash the same way (prefix .. '{' .. device .. '}:outbox').
    private string OfDevice(string device, string kind) => $"{Prefix}{{{device}}}:{kind}";

    public RedisKey Outbox(string device) => OfDevice(device, "outbox");
    public RedisKey Expiry => $"{Prefix}expiry";
    public RedisKey Sequence => $"{Prefix}seq";
    /// <summary>An idempotency key scoped by its device (<c>device/key</c>): under the device's tag.</summary>
    public RedisKey Idempotency(string scoped)
    {
        var slash = scoped.IndexOf('/', StringComparison.Ordinal);
        return slash > 0 ? OfDevice(scoped[..slash], "idem:" + scoped[(slash + 1)..]) : $"{Prefix}idem:{scoped}";
    }
    public RedisKey FinalMessages => $"{Prefix}final";
    public RedisKey IdempotencyIndex => $"{Prefix}idem-index";
    public RedisKey Recent(string device) => OfDevice(device, "recent");
    public RedisKey Stats => $"{Prefix}stats";

    /// <summary>Payload bytes of a device sender's pending messages (DeviceGate:Limits:DeviceStoredBytes).</summary>
    public RedisKey SenderBytes(string sender) => OfDevice(sender, "sender-bytes");

    /// <summary>A random value written once per Redis data set: when it vanishes or changes, Redis lost its data.</summary>
    public RedisKey Instance => $"{Prefix}instance";

    // Directory
    public RedisKey Devices => $"{Prefix}devices";

    /// <summary>Known device ids (a sorted set read by value), for listings by cursor and prefix.</summary>
    public RedisKey DeviceIndex => $"{Prefix}device-index";
    public RedisKey TokensNotBefore => $"{Prefix}tokens-not-before";
    public RedisKey Group(string group) => $"{Prefix}group:{group}";
    public RedisKey GroupsOf(string device) => OfDevice(device, "groups-of");
    public RedisKey GroupNames => $"{Prefix}groups";

    // Device state (desired, reported, versions)
    public RedisKey State(string device) => OfDevice(device, "state");

    // Tags: one hash per device, and per key=value the set of devices that have it (for the tag filter).
    public RedisKey Tags(string device) => OfDevice(device, "tags");
    public string TaggedPrefix => $"{Prefix}tagged:";
    public RedisKey Tagged(string key, string value) => $"{TaggedPrefix}{key}={value}";

    // What a device's transport keeps between connections (MQTT subscriptions): a hash that Redis expires itself.
    public RedisKey Session(string device) => OfDevice(device, "session");

    // Presence
    /// <summary>Where the device is connected: <c>node|epoch|connectedAt|transport|protocol</c>.</summary>
    public RedisKey DevicePresence(string device) => OfDevice(device, "presence");

    /// <summary>The devices a node holds (a sorted set read by value), for listings and counts.</summary>
    public RedisKey NodeDevices(string node) => $"{Prefix}node:{node}:devices";
    public RedisKey Epoch(string device) => OfDevice(device, "epoch");
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
