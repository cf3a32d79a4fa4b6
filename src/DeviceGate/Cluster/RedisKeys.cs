using StackExchange.Redis;

namespace DeviceGate.Cluster;

/// <summary>
/// Every Redis key and channel name, built in one place, all under the configured prefix. The slot rule (Redis
/// Cluster): every key of one device carries the device id as its hash tag (<c>{device}</c>), so a script on one
/// device's keys stays in one slot; what is cluster-wide has a tag of its own (<c>{directory}</c>, <c>{groups}</c>,
/// <c>{events}</c>) or is only ever touched by single-key commands. docs/operations.md's key table is checked
/// against <see cref="Layout"/> by a test.
/// </summary>
internal sealed class RedisKeys(string prefix)
{
    public string Prefix { get; } = prefix;

    private string OfDevice(string device, string kind) => $"{Prefix}{{{device}}}:{kind}";

    // ---- one device (hash tag {device}) ----
    /// <summary>A message's hash (status, history, payload while pending), under its device's tag.</summary>
    public RedisKey Message(string device, string id) => MessagePrefix(device) + id;
    /// <summary>What a device's scripts prepend to a message id for its hash (the same tag as the device's keys).</summary>
    public string MessagePrefix(string device) => OfDevice(device, "msg:");
    public RedisKey Outbox(string device) => OfDevice(device, "outbox");
    /// <summary>The device's acceptance counter: orders its outbox.</summary>
    public RedisKey Sequence(string device) => OfDevice(device, "seq");
    public RedisKey Recent(string device) => OfDevice(device, "recent");
    /// <summary>An idempotency key, scoped by the device it sends to.</summary>
    public RedisKey Idempotency(string device, string key) => OfDevice(device, "idem:" + key);
    /// <summary>Payload bytes of a device sender's pending messages (DeviceGate:Limits:DeviceStoredBytes).</summary>
    public RedisKey SenderBytes(string sender) => OfDevice(sender, "sender-bytes");
    public RedisKey GroupsOf(string device) => OfDevice(device, "groups-of");
    public RedisKey State(string device) => OfDevice(device, "state");
    public RedisKey Tags(string device) => OfDevice(device, "tags");
    /// <summary>What a device's transport keeps between connections (MQTT subscriptions): a hash Redis expires itself.</summary>
    public RedisKey Session(string device) => OfDevice(device, "session");
    /// <summary>Where the device is connected: <c>node|epoch|connectedAt|transport|protocol</c>.</summary>
    public RedisKey DevicePresence(string device) => OfDevice(device, "presence");
    public RedisKey Epoch(string device) => OfDevice(device, "epoch");

    // ---- single-key lookups and indexes (no tag: they spread over the cluster) ----
    /// <summary>Which device a message id belongs to (for GET and DELETE /api/messages/{id}); it expires with the status.</summary>
    public RedisKey MessageDevice(string id) => $"{Prefix}msg:{id}";

    /// <summary>Pending messages by expiry time, in <see cref="ExpiryBuckets"/> sorted sets (member <c>device\nid</c>), chosen by device.</summary>
    public const int ExpiryBuckets = 16;
    public RedisKey Expiry(int bucket) => $"{Prefix}expiry:{bucket}";
    public RedisKey ExpiryOf(string device) => Expiry(Bucket(device));
    public static RedisValue ExpiryMember(string device, string id) => device + "\n" + id;

    private static int Bucket(string device)
    {
        var h = 2166136261u;
        foreach (var c in device) h = (h ^ c) * 16777619u;
        return (int)(h % ExpiryBuckets);
    }

    /// <summary>Per tag key=value, the devices that have it (a hint: listings check each device's tags).</summary>
    public RedisKey Tagged(string key, string value) => $"{Prefix}tagged:{key}={value}";
    public RedisKey Stats => $"{Prefix}stats";
    /// <summary>A random value written once per Redis data set: when it vanishes or changes, Redis lost its data.</summary>
    public RedisKey Instance => $"{Prefix}instance";
    public RedisKey Health => $"{Prefix}health";

    // ---- nodes (single-key commands only) ----
    /// <summary>The devices a node holds (a sorted set read by value), for listings and counts.</summary>
    public RedisKey NodeDevices(string node) => $"{Prefix}node:{node}:devices";
    public RedisKey NodeLease(string node) => $"{Prefix}node:{node}:lease";
    /// <summary>Every node id that ever renewed a lease here (live ones have a lease key).</summary>
    public RedisKey Nodes => $"{Prefix}nodes";
    /// <summary>Devices on a node that another node stored a message for and could not reach (UndeliveredHints).</summary>
    public RedisKey Undelivered(string node) => $"{Prefix}undelivered:{node}";

    // ---- the directory (hash tag {directory}): known devices, their index and revocations ----
    public RedisKey Devices => $"{Prefix}{{directory}}:devices";
    /// <summary>Known device ids (a sorted set read by value), for listings by cursor and prefix.</summary>
    public RedisKey DeviceIndex => $"{Prefix}{{directory}}:device-index";
    public RedisKey TokensNotBefore => $"{Prefix}{{directory}}:tokens-not-before";

    // ---- groups (hash tag {groups}): member lists and the names of groups that have members ----
    public RedisKey Group(string group) => $"{Prefix}{{groups}}:group:{group}";
    public RedisKey GroupNames => $"{Prefix}{{groups}}:names";

    // ---- events (hash tag {events}): the append script (counter, stream, shard channel) stays in one slot ----
    public RedisKey EventSequence => $"{Prefix}{{events}}:seq";
    public RedisKey EventStream => $"{Prefix}{{events}}:stream";

    // Channels. A node's own channel and the events channel are shard channels (SPUBLISH/SSUBSCRIBE): in a Redis
    // Cluster a message to one node goes through one shard, not every one; broadcast is one classic channel.
    public RedisChannel NodeChannel(string node) => RedisChannel.Sharded($"{Prefix}{{node:{node}}}:channel");
    public RedisChannel BroadcastChannel => RedisChannel.Literal($"{Prefix}broadcast");
    public RedisChannel EventsChannel => RedisChannel.Sharded($"{Prefix}{{events}}:channel");

    /// <summary>A key (or channel) as docs/operations.md lists it: its name after the prefix, what it holds and when Redis drops it.</summary>
    public sealed record KeyDoc(string Name, string Holds, string Expiry)
    {
        /// <summary>The slot rule: keys with a hash tag share the tag's slot; the rest are only touched by single-key commands.</summary>
        public string Slot => Name.IndexOf('{', StringComparison.Ordinal) is var open and >= 0
            ? $"`{Name[open..(Name.IndexOf('}', open) + 1)]}`"
            : "its own (single-key commands only)";
    }

    /// <summary>Every key and channel, in the order docs/operations.md lists them (generated from here by a test).</summary>
    public static IReadOnlyList<KeyDoc> Layout()
    {
        var k = new RedisKeys("");
        const string d = "<device>", id = "<id>", node = "<node>";
        return
        [
            new(S(k.Message(d, id)), "a message: status, history, attempts; its payload while pending", "the status retention after it became final"),
            new(S(k.Outbox(d)), "sorted set: the device's pending message ids by acceptance order", "deleted with the device"),
            new(S(k.Sequence(d)), "counter: the device's acceptance order", "deleted with the device"),
            new(S(k.Recent(d)), "list: the device's last 100 message ids", "kept; trimmed to 100"),
            new(S(k.Idempotency(d, "<key>")), "the message id an Idempotency-Key stored", "the status retention (PX)"),
            new(S(k.SenderBytes(d)), "counter: payload bytes of this device's pending messages to others (DeviceStoredBytes)", "when it reaches 0, or past its last pending message's expiry"),
            new(S(k.GroupsOf(d)), "set: the device's groups (the MaxGroupsPerDevice cap is checked here)", "deleted with the device"),
            new(S(k.State(d)), "hash: desired and reported state, their versions, the acked version, the pending state message", "deleted with the device"),
            new(S(k.Tags(d)), "hash: the device's tags", "deleted with the device"),
            new(S(k.Session(d)), "hash: a remembered MQTT session (subscriptions, owner)", "when the session lapses (PEXPIREAT)"),
            new(S(k.DevicePresence(d)), "string: `node|epoch|connectedAt|transport|protocol` of the current connection", "deleted on disconnect; ignored once its node's lease is gone"),
            new(S(k.Epoch(d)), "counter: the device's connection epoch (fences takeovers)", "kept"),
            new(S(k.MessageDevice(id)), "string: the device a message id belongs to (GET and DELETE /api/messages/{id})", "the message's expiry plus the status retention"),
            new(S(k.Expiry(0)).Replace(":0", ":<0-15>", StringComparison.Ordinal), "sorted sets: pending messages (`<device>\\n<id>`) by expiry time, 16 buckets chosen by device", "entries removed when final"),
            new(S(k.Tagged("<k>", "<v>")), "set: devices with tag k=v (an index; listings check each device's tags)", "entries removed when the tag changes"),
            new(S(k.Stats), "hash: each node's counters, written with its lease", "kept"),
            new(S(k.Instance), "string: a random value per data set (when it vanishes or changes, Redis lost its data)", "kept"),
            new(S(k.Health), "string: the readiness probe's write", "5 s"),
            new(S(k.NodeDevices(node)), "sorted set: the devices a node holds, by id (listings and counts)", "deleted when the node starts and stops"),
            new(S(k.NodeLease(node)), "string: the node is alive", "PresenceLease"),
            new(S(k.Nodes), "set: every node id that renewed a lease", "a node removes itself when it stops"),
            new(S(k.Undelivered(node)), "set: devices on that node whose hop was lost (UndeliveredHints)", "drained every second by that node"),
            new(S(k.Devices), "hash: known devices and when each was last seen", "entries removed when a device is forgotten"),
            new(S(k.DeviceIndex), "sorted set: known device ids by value (listings by cursor and prefix)", "entries removed when a device is forgotten"),
            new(S(k.TokensNotBefore), "hash: token revocations per device", "kept (a revocation outlives forgetting the device)"),
            new(S(k.Group("<group>")), "set: a group's members", "deleted when empty"),
            new(S(k.GroupNames), "set: the groups that have members", "entries removed when a group empties"),
            new(S(k.EventSequence), "counter: the cluster's event numbers", "kept"),
            new(S(k.EventStream), "stream: the last ReplayBuffer events, by number (Last-Event-ID)", "capped (MAXLEN ~)"),
            new(k.NodeChannel(node).ToString(), "shard channel (SPUBLISH): node-to-node deliveries, closes, rpcs", "-"),
            new(k.BroadcastChannel.ToString(), "channel (PUBLISH): broadcasts, to every node", "-"),
            new(k.EventsChannel.ToString(), "shard channel: each event as it is appended", "-"),
        ];

        static string S(RedisKey key) => key.ToString();
    }
}
