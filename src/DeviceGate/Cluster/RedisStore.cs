using System.Globalization;
using System.Net.WebSockets;
using System.Text.Json;
using DeviceGate.Cluster;
using StackExchange.Redis;
using DeviceGate.Storage;

namespace DeviceGate.Cluster;

/// <summary>
/// The store in cluster mode: outbox, statuses, devices, groups and idempotency keys in Redis, shared by every
/// node. Each multi-key change is one Lua script, so it is atomic. A write Redis cannot take throws
/// <see cref="StoreUnavailableException"/> (the API answers 503, nothing is acknowledged).
/// </summary>
internal sealed class RedisStore(IConnectionMultiplexer redis, RedisKeys keys, TimeSpan statusRetention, ReplicationBarrier? replication = null)
    : IMessageStore, IDirectoryStore, IStateStore, IStoreHealth
{
    private IDatabase Db => redis.GetDatabase();

    // Durable writes (ttl sends, state writes, cancels): on the replication barrier's own connection when
    // DeviceGate:Redis:MinReplicas > 0, so its WAIT covers them.
    private IDatabase DurableDb => replication?.Db ?? Db;

    /// <summary>With MinReplicas, a durable write is acknowledged only once WAIT confirms it; otherwise 503 (it may survive).</summary>
    private async Task ReplicatedAsync()
    {
        if (replication is null) return;
        if (!await replication.ConfirmAsync().ConfigureAwait(false)) throw new StoreUnavailableException(replication.TimedOut());
    }

    private static string Iso(DateTimeOffset t) => Timestamps.Iso(t);
    private static long Ms(DateTimeOffset t) => t.ToUnixTimeMilliseconds();

    private static async Task<T> Guard<T>(Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (Exception e) when (e is RedisConnectionException or RedisTimeoutException
                                      || (e is RedisServerException && e.Message.StartsWith("READONLY", StringComparison.Ordinal)))
        {
            throw new StoreUnavailableException(e);
        }
    }

    // ---- IMessageStore ------------------------------------------------------------------------------------------

    private const string AcceptScript = """
        local idem = KEYS[5]
        if idem ~= '' then
          local existing = redis.call('GET', idem)
          if existing then
            local st = redis.call('HGET', ARGV[14] .. existing, 'status')
            return {'dup', existing, st or 'expired'}
          end
        end
        local sv = tonumber(ARGV[16])
        if sv == 0 and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[12]) then return {'full', '', ''} end
        if KEYS[9] ~= '' and tonumber(redis.call('GET', KEYS[9]) or '0') + #ARGV[6] > tonumber(ARGV[15]) then return {'quota', '', ''} end
        if sv > 0 then
          -- Latest wins: the state hash names the device's pending state message (mid, at version mv).
          local cur = redis.call('HMGET', KEYS[10], 'mid', 'mv', 'av')
          local live = cur[1] and redis.call('HGET', ARGV[14] .. cur[1], 'pending') == '1'
          if (live and tonumber(cur[2]) >= sv) or tonumber(cur[3] or '0') >= sv then
            redis.call('HSET', KEYS[1], 'device', ARGV[2], 'sender', ARGV[3], 'grp', '', 'kind', ARGV[5], 'data', ARGV[6],
              'raw', '', 'rawBinary', '0', 'created', ARGV[9], 'expires', ARGV[10], 'updated', ARGV[9], 'sv', ARGV[16],
              'status', 'superseded', 'pending', '0', 'attempts', '0',
              'history', string.sub(ARGV[11], 1, -2) .. ',{"status":"superseded","at":"' .. ARGV[17] .. '"}]')
            redis.call('ZADD', KEYS[11], ARGV[9], ARGV[1])
            redis.call('LPUSH', KEYS[8], ARGV[1])
            redis.call('LTRIM', KEYS[8], 0, 99)
            return {'superseded', ARGV[1], 'superseded'}
          end
          if live then
            local old = ARGV[14] .. cur[1]
            local h = string.sub(redis.call('HGET', old, 'history'), 1, -2) .. ',{"status":"superseded","at":"' .. ARGV[17] .. '"}]'
            redis.call('HSET', old, 'status', 'superseded', 'pending', '0', 'updated', ARGV[9], 'history', h)
            redis.call('ZREM', KEYS[2], cur[1])
            redis.call('ZREM', KEYS[3], cur[1])
            redis.call('ZADD', KEYS[11], ARGV[9], cur[1])
          end
          redis.call('HSET', KEYS[10], 'mid', ARGV[1], 'mv', ARGV[16])
        end
        local seq = redis.call('INCR', KEYS[4])
        redis.call('HSET', KEYS[1], 'device', ARGV[2], 'sender', ARGV[3], 'grp', ARGV[4], 'kind', ARGV[5], 'data', ARGV[6],
          'raw', ARGV[7], 'rawBinary', ARGV[8], 'created', ARGV[9], 'expires', ARGV[10], 'updated', ARGV[9], 'sv', ARGV[16],
          'status', 'queued', 'pending', '1', 'attempts', '0', 'history', ARGV[11])
        redis.call('ZADD', KEYS[2], seq, ARGV[1])
        redis.call('ZADD', KEYS[3], ARGV[10], ARGV[1])
        redis.call('HSETNX', KEYS[6], ARGV[2], '')
        redis.call('ZADD', KEYS[12], 0, ARGV[2])
        redis.call('LPUSH', KEYS[8], ARGV[1])
        redis.call('LTRIM', KEYS[8], 0, 99)
        if KEYS[9] ~= '' then redis.call('INCRBY', KEYS[9], #ARGV[6]) end
        if idem ~= '' then
          redis.call('SET', idem, ARGV[1], 'PX', ARGV[13])
          redis.call('ZADD', KEYS[7], ARGV[9], idem)
        end
        return {'ok', ARGV[1], 'queued'}
        """;

    // rawBinary flags: 1 the raw form is binary, 2 a separate raw copy is stored (written before the JSON-string flag
    // existed), 4 the raw form is the string that data (a JSON string) denotes.
    public Task<AcceptResult> AcceptAsync(StoredMessage m, string? idempotencyKey, int maxQueuedPerDevice, long maxSenderBytes = long.MaxValue) => Guard(async () =>
    {
        var flags = (m.Data.RawType == WebSocketMessageType.Binary ? 1 : 0) | (m.Data.RawIsJsonString ? 4 : 0);
        var quota = m.From != DeviceId.Server && maxSenderBytes != long.MaxValue;
        var result = (RedisResult[])(await DurableDb.ScriptEvaluateAsync(AcceptScript,
            [keys.Message(m.Id), keys.Outbox(m.Device), keys.Expiry, keys.Sequence, idempotencyKey is null ? "" : keys.Idempotency(idempotencyKey), keys.Devices,
                keys.IdempotencyIndex, keys.Recent(m.Device), quota ? keys.SenderBytes(m.From) : "", keys.State(m.Device), keys.FinalMessages, keys.DeviceIndex],
            [
                m.Id, m.Device, m.From, m.Group ?? "", (int)m.Data.Kind, m.Data.Bytes.ToArray(), Array.Empty<byte>(), flags,
                Ms(m.CreatedAt), Ms(m.ExpiresAt), StatusChange.FirstHistoryJson(MessageStatus.Queued, m.CreatedAt),
                maxQueuedPerDevice, (long)statusRetention.TotalMilliseconds, keys.Prefix + "msg:", quota ? maxSenderBytes : 0,
                m.StateVersion, Iso(m.CreatedAt),
            ]).ConfigureAwait(false))!;
        var outcome = (string)result[0]!;
        // A duplicate is confirmed too: the first attempt may have been answered 503 before its replicas had it.
        if (outcome is "ok" or "superseded" or "dup") await ReplicatedAsync().ConfigureAwait(false);
        return outcome switch
        {
            "dup" => new AcceptResult(AcceptOutcome.Duplicate, (string)result[1]!, (string)result[2]!),
            "full" => new AcceptResult(AcceptOutcome.OutboxFull, m.Id, MessageStatus.Queued),
            "quota" => new AcceptResult(AcceptOutcome.QuotaExceeded, m.Id, MessageStatus.Queued),
            "superseded" => new AcceptResult(AcceptOutcome.Superseded, m.Id, MessageStatus.Superseded),
            _ => new AcceptResult(AcceptOutcome.Accepted, m.Id, MessageStatus.Queued),
        };
    });

    public Task<IReadOnlyList<StoredMessage>> LoadPendingAsync(string device, DateTimeOffset now) => Guard<IReadOnlyList<StoredMessage>>(async () =>
    {
        var ids = await Db.SortedSetRangeByRankAsync(keys.Outbox(device)).ConfigureAwait(false);
        var batch = Db.CreateBatch();
        var reads = ids.Select(id => batch.HashGetAllAsync(keys.Message(id!))).ToArray();
        batch.Execute();
        var list = new List<StoredMessage>(ids.Length);
        for (var i = 0; i < ids.Length; i++)
        {
            var h = (await reads[i].ConfigureAwait(false)).ToDictionary(e => (string)e.Name!, e => e.Value);
            if (h.Count == 0 || h["pending"] != "1" || (long)h["expires"] <= Ms(now)) continue;
            list.Add(ToStored(ids[i]!, device, h));
        }
        return list;
    });

    private static StoredMessage ToStored(string id, string device, Dictionary<string, RedisValue> h)
    {
        var flags = (int)h["rawBinary"];
        byte[] data = h["data"]!;
        var group = (string)h["grp"]!;
        return new StoredMessage(id, device, (string)h["sender"]!, group.Length == 0 ? null : group,
            MessageData.Restore((DataKind)(int)h["kind"], data, (flags & 1) != 0, (flags & 4) != 0, (flags & 2) != 0 ? (byte[])h["raw"]! : null),
            DateTimeOffset.FromUnixTimeMilliseconds((long)h["created"]), DateTimeOffset.FromUnixTimeMilliseconds((long)h["expires"]), (int)h["attempts"],
            h.TryGetValue("sv", out var sv) && !sv.IsNullOrEmpty ? (long)sv : 0);
    }

    /// <summary>Lua: a pending message became final; its payload no longer counts against its (device) sender's stored bytes.</summary>
    private const string ReleaseSenderBytes = """
        local function release(key, prefix)
          local sender = redis.call('HGET', key, 'sender')
          if sender and sender ~= 'server' then
            local counter = prefix .. '{' .. sender .. '}:sender-bytes'
            local left = redis.call('DECRBY', counter, redis.call('HSTRLEN', key, 'data'))
            if left <= 0 then redis.call('DEL', counter) end
          end
        end
        """;

    private const string RecordScript = ReleaseSenderBytes + "\n" + """
        if redis.call('HGET', KEYS[1], 'pending') ~= '1' then return 0 end
        local h = redis.call('HGET', KEYS[1], 'history')
        h = string.sub(h, 1, -2) .. ',{"status":"' .. ARGV[1] .. '","at":"' .. ARGV[4] .. '"}]'
        redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated', ARGV[3], 'history', h)
        if ARGV[1] == 'sent' then redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
        if ARGV[2] == '1' then
          release(KEYS[1], ARGV[6])
          redis.call('HSET', KEYS[1], 'pending', '0')
          redis.call('ZREM', KEYS[2], ARGV[5])
          redis.call('ZREM', KEYS[3], ARGV[5])
          redis.call('ZADD', KEYS[4], ARGV[3], ARGV[5])
        end
        return 1
        """;

    public Task RecordAsync(string device, string id, string status, bool final, DateTimeOffset at) => Guard(() =>
        Db.ScriptEvaluateAsync(RecordScript, [keys.Message(id), keys.Outbox(device), keys.Expiry, keys.FinalMessages],
            [status, final ? "1" : "0", Ms(at), Iso(at), id, keys.Prefix]));

    public Task<IReadOnlyList<MessageRecord>> RecentAsync(string device, int limit) => Guard<IReadOnlyList<MessageRecord>>(async () =>
    {
        var ids = await Db.ListRangeAsync(keys.Recent(device), 0, limit - 1).ConfigureAwait(false);
        var list = new List<MessageRecord>();
        foreach (var id in ids)
        {
            if (await GetAsync(id!).ConfigureAwait(false) is { } record) list.Add(record);
        }
        return list;
    });

    public Task<MessageRecord?> GetAsync(string id) => Guard(async () =>
    {
        var entries = await Db.HashGetAllAsync(keys.Message(id)).ConfigureAwait(false);
        if (entries.Length == 0) return null;
        var h = entries.ToDictionary(e => (string)e.Name!, e => e.Value);
        return (MessageRecord?)new MessageRecord(id, (string)h["device"]!, (string)h["status"]!,
            DateTimeOffset.FromUnixTimeMilliseconds((long)h["created"]), DateTimeOffset.FromUnixTimeMilliseconds((long)h["updated"]), (int)h["attempts"], StatusChange.ParseHistory((string)h["history"]!));
    });

    private const string CancelScript = ReleaseSenderBytes + "\n" + """
        local device = redis.call('HGET', KEYS[1], 'device')
        if not device then return 'nf' end
        if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return 'sent' end
        release(KEYS[1], ARGV[4])
        local h = redis.call('HGET', KEYS[1], 'history')
        h = string.sub(h, 1, -2) .. ',{"status":"cancelled","at":"' .. ARGV[2] .. '"}]'
        redis.call('HSET', KEYS[1], 'status', 'cancelled', 'pending', '0', 'updated', ARGV[1], 'history', h)
        redis.call('ZREM', ARGV[4] .. '{' .. device .. '}:outbox', ARGV[3])
        redis.call('ZREM', KEYS[2], ARGV[3])
        redis.call('ZADD', KEYS[3], ARGV[1], ARGV[3])
        return 'ok'
        """;

    public Task<CancelOutcome> CancelAsync(string id, DateTimeOffset at) => Guard(async () =>
    {
        var outcome = (string?)await DurableDb.ScriptEvaluateAsync(CancelScript, [keys.Message(id), keys.Expiry, keys.FinalMessages],
            [Ms(at), Iso(at), id, keys.Prefix]).ConfigureAwait(false);
        if (outcome == "ok") await ReplicatedAsync().ConfigureAwait(false);
        return outcome switch
        {
            "ok" => CancelOutcome.Cancelled,
            "sent" => CancelOutcome.AlreadySent,
            _ => CancelOutcome.NotFound,
        };
    });

    private const string ExpireScript = ReleaseSenderBytes + "\n" + """
        local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
        local out = {}
        for _, id in ipairs(ids) do
          local key = ARGV[3] .. id
          redis.call('ZREM', KEYS[1], id)
          if redis.call('HGET', key, 'pending') == '1' then
            release(key, ARGV[4])
            local device = redis.call('HGET', key, 'device')
            local h = redis.call('HGET', key, 'history')
            h = string.sub(h, 1, -2) .. ',{"status":"expired","at":"' .. ARGV[2] .. '"}]'
            redis.call('HSET', key, 'status', 'expired', 'pending', '0', 'updated', ARGV[1], 'history', h)
            redis.call('ZREM', ARGV[4] .. '{' .. device .. '}:outbox', id)
            redis.call('ZADD', KEYS[2], ARGV[1], id)
            table.insert(out, id)
            table.insert(out, device)
          end
        end
        return out
        """;

    public Task<IReadOnlyList<(string Id, string Device)>> ExpireDueAsync(DateTimeOffset now) => Guard<IReadOnlyList<(string, string)>>(async () =>
    {
        var r = (RedisResult[])(await Db.ScriptEvaluateAsync(ExpireScript, [keys.Expiry, keys.FinalMessages],
            [Ms(now), Iso(now), keys.Prefix + "msg:", keys.Prefix]).ConfigureAwait(false))!;
        var list = new List<(string, string)>();
        for (var i = 0; i + 1 < r.Length; i += 2) list.Add(((string)r[i]!, (string)r[i + 1]!));
        return list;
    });

    private const string PurgeScript = """
        local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 10000)
        for _, id in ipairs(ids) do redis.call('DEL', ARGV[2] .. id) end
        if #ids > 0 then redis.call('ZREM', KEYS[1], unpack(ids)) end
        local idem = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 10000)
        for _, k in ipairs(idem) do redis.call('DEL', k) end
        if #idem > 0 then redis.call('ZREM', KEYS[2], unpack(idem)) end
        return #ids
        """;

    public Task PurgeAsync(DateTimeOffset before) => Guard(() =>
        Db.ScriptEvaluateAsync(PurgeScript, [keys.FinalMessages, keys.IdempotencyIndex], [Ms(before), keys.Prefix + "msg:"]));

    // ---- IDirectoryStore ----------------------------------------------------------------------------------------

    public Task<DirectorySnapshot> LoadAsync() => Guard(async () =>
    {
        var devices = (await Db.HashGetAllAsync(keys.Devices).ConfigureAwait(false))
            .ToDictionary(e => (string)e.Name!, e => e.Value.IsNullOrEmpty ? (DateTimeOffset?)null : DateTimeOffset.FromUnixTimeMilliseconds((long)e.Value), StringComparer.Ordinal);
        var notBefore = (await Db.HashGetAllAsync(keys.TokensNotBefore).ConfigureAwait(false))
            .ToDictionary(e => (string)e.Name!, e => DateTimeOffset.FromUnixTimeMilliseconds((long)e.Value), StringComparer.Ordinal);
        var memberships = new List<(string, string)>();
        foreach (var group in await Db.SetMembersAsync(keys.GroupNames).ConfigureAwait(false))
        {
            foreach (var device in await Db.SetMembersAsync(keys.Group(group!)).ConfigureAwait(false)) memberships.Add((group!, device!));
        }
        var tags = new Dictionary<string, IReadOnlyDictionary<string, string>>(StringComparer.Ordinal);
        foreach (var device in devices.Keys)
        {
            var set = await TagsAsync(device).ConfigureAwait(false);
            if (set.Count > 0) tags[device] = set;
        }
        // Sessions are read where they are needed (RedisDirectory reads Redis every time).
        return new DirectorySnapshot(devices, memberships, notBefore, tags, new Dictionary<string, RememberedSession>());
    });

    /// <summary>Data written before the device index existed: the index is built once from the devices hash.</summary>
    public async Task EnsureDeviceIndexAsync()
    {
        var db = Db;
        if (await db.KeyExistsAsync(keys.DeviceIndex).ConfigureAwait(false) || !await db.KeyExistsAsync(keys.Devices).ConfigureAwait(false)) return;
        var batch = new List<SortedSetEntry>(1000);
        await foreach (var e in db.HashScanAsync(keys.Devices, pageSize: 1000).ConfigureAwait(false))
        {
            batch.Add(new SortedSetEntry(e.Name, 0));
            if (batch.Count < 1000) continue;
            await db.SortedSetAddAsync(keys.DeviceIndex, batch.ToArray()).ConfigureAwait(false);
            batch.Clear();
        }
        if (batch.Count > 0) await db.SortedSetAddAsync(keys.DeviceIndex, batch.ToArray()).ConfigureAwait(false);
    }

    private const string SeenScript = """
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        redis.call('ZADD', KEYS[2], 0, ARGV[1])
        return 1
        """;

    public Task SaveLastSeenAsync(string device, DateTimeOffset at) => Guard(() => Db.ScriptEvaluateAsync(SeenScript, [keys.Devices, keys.DeviceIndex], [device, Ms(at)]));

    private const string MembershipScript = """
        if ARGV[3] == '1' then
          if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then return 1 end
          if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 0 end
          redis.call('SADD', KEYS[1], ARGV[2])
          redis.call('SADD', KEYS[2], ARGV[1])
          redis.call('SADD', KEYS[3], ARGV[1])
          redis.call('HSETNX', KEYS[4], ARGV[2], '')
          redis.call('ZADD', KEYS[5], 0, ARGV[2])
        else
          redis.call('SREM', KEYS[1], ARGV[2])
          redis.call('SREM', KEYS[2], ARGV[1])
          if redis.call('SCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[3], ARGV[1]) end
        end
        return 1
        """;

    public Task<bool> SetMembershipAsync(string group, string device, bool member, int maxGroups = int.MaxValue) => Guard(async () =>
        (int)await Db.ScriptEvaluateAsync(MembershipScript, [keys.Group(group), keys.GroupsOf(device), keys.GroupNames, keys.Devices, keys.DeviceIndex],
            [group, device, member ? "1" : "0", maxGroups]).ConfigureAwait(false) == 1);

    private const string RevokeScript = """
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        redis.call('HSETNX', KEYS[2], ARGV[1], '')
        redis.call('ZADD', KEYS[3], 0, ARGV[1])
        return 1
        """;

    public Task RevokeTokensAsync(string device, DateTimeOffset at) => Guard(() =>
        Db.ScriptEvaluateAsync(RevokeScript, [keys.TokensNotBefore, keys.Devices, keys.DeviceIndex], [device, Ms(at)]));

    private const string ForgetScript = ReleaseSenderBytes + "\n" + """
        for _, g in ipairs(redis.call('SMEMBERS', KEYS[1])) do
          redis.call('SREM', ARGV[2] .. g, ARGV[1])
          if redis.call('SCARD', ARGV[2] .. g) == 0 then redis.call('SREM', KEYS[5], g) end
        end
        redis.call('DEL', KEYS[1])
        redis.call('HDEL', KEYS[2], ARGV[1])
        redis.call('ZREM', KEYS[11], ARGV[1])
        for _, id in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
          local key = ARGV[3] .. id
          local h = redis.call('HGET', key, 'history')
          if h then
            release(key, ARGV[6])
            h = string.sub(h, 1, -2) .. ',{"status":"cancelled","at":"' .. ARGV[5] .. '"}]'
            redis.call('HSET', key, 'status', 'cancelled', 'pending', '0', 'updated', ARGV[4], 'history', h)
            redis.call('ZREM', KEYS[6], id)
            redis.call('ZADD', KEYS[7], ARGV[4], id)
          end
        end
        redis.call('DEL', KEYS[4])
        redis.call('DEL', KEYS[8])
        local old = redis.call('HGETALL', KEYS[9])
        for i = 1, #old, 2 do redis.call('SREM', ARGV[7] .. old[i] .. '=' .. old[i + 1], ARGV[1]) end
        redis.call('DEL', KEYS[9])
        redis.call('DEL', KEYS[10])
        return 1
        """;

    private const string SetTagsScript = """
        local old = redis.call('HGETALL', KEYS[1])
        for i = 1, #old, 2 do redis.call('SREM', ARGV[2] .. old[i] .. '=' .. old[i + 1], ARGV[1]) end
        redis.call('DEL', KEYS[1])
        for i = 3, #ARGV, 2 do
          redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
          redis.call('SADD', ARGV[2] .. ARGV[i] .. '=' .. ARGV[i + 1], ARGV[1])
        end
        redis.call('HSETNX', KEYS[2], ARGV[1], '')
        redis.call('ZADD', KEYS[3], 0, ARGV[1])
        return 1
        """;

    public Task SetTagsAsync(string device, IReadOnlyDictionary<string, string> tags)
    {
        var args = new List<RedisValue> { device, keys.TaggedPrefix };
        foreach (var (k, v) in tags)
        {
            args.Add(k);
            args.Add(v);
        }
        return Guard(() => Db.ScriptEvaluateAsync(SetTagsScript, [keys.Tags(device), keys.Devices, keys.DeviceIndex], args.ToArray()));
    }

    public Task<IReadOnlyDictionary<string, string>> TagsAsync(string device) => Guard<IReadOnlyDictionary<string, string>>(async () =>
        (await Db.HashGetAllAsync(keys.Tags(device)).ConfigureAwait(false)).ToDictionary(e => (string)e.Name!, e => (string)e.Value!, StringComparer.Ordinal));

    // Redis expires the key itself when the session lapses; "take" = 0 writes only over the same owner.
    private const string PutSessionScript = """
        if ARGV[4] == '0' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'subscriptions', ARGV[2], 'until', ARGV[3])
        redis.call('PEXPIREAT', KEYS[1], ARGV[3])
        return 1
        """;

    public Task PutSessionAsync(string device, RememberedSession session, bool take) => Guard(() =>
        Db.ScriptEvaluateAsync(PutSessionScript, [keys.Session(device)], [session.Owner, session.Subscriptions, Ms(session.Until), take ? "1" : "0"]));

    public Task DeleteSessionAsync(string device) => Guard(() => Db.KeyDeleteAsync(keys.Session(device)));

    public Task<RememberedSession?> GetSessionAsync(string device, DateTimeOffset now) => Guard<RememberedSession?>(async () =>
    {
        var fields = (await Db.HashGetAllAsync(keys.Session(device)).ConfigureAwait(false)).ToDictionary(e => (string)e.Name!, e => e.Value);
        if (!fields.TryGetValue("owner", out var owner) || !fields.TryGetValue("subscriptions", out var subscriptions) || !fields.TryGetValue("until", out var until)) return null;
        var at = DateTimeOffset.FromUnixTimeMilliseconds((long)until);
        return at > now ? new RememberedSession(owner!, subscriptions!, at) : null;
    });

    public Task ForgetDeviceAsync(string device)
    {
        var now = DateTimeOffset.UtcNow;
        return Guard(() => Db.ScriptEvaluateAsync(ForgetScript,
            [keys.GroupsOf(device), keys.Devices, keys.TokensNotBefore, keys.Outbox(device), keys.GroupNames, keys.Expiry, keys.FinalMessages, keys.State(device), keys.Tags(device), keys.Session(device), keys.DeviceIndex],
            [device, keys.Prefix + "group:", keys.Prefix + "msg:", Ms(now), Iso(now), keys.Prefix, keys.TaggedPrefix]));
    }

    public Task<int> CountQueuedAsync(string device, DateTimeOffset now) => Guard(async () =>
    {
        var ids = await Db.SortedSetRangeByRankAsync(keys.Outbox(device)).ConfigureAwait(false);
        if (ids.Length == 0) return 0;
        var batch = Db.CreateBatch();
        var reads = ids.Select(id => batch.HashGetAsync(keys.Message(id!), "expires")).ToArray();
        batch.Execute();
        var count = 0;
        foreach (var r in reads)
        {
            var expires = await r.ConfigureAwait(false);
            if (!expires.IsNull && (long)expires > Ms(now)) count++;
        }
        return count;
    });

    // ---- directory reads (RedisDirectory): they must see every node's writes ------------------------------------------

    public Task<IReadOnlyList<string>> MembersAsync(string group) => Guard<IReadOnlyList<string>>(async () =>
        (await Db.SetMembersAsync(keys.Group(group)).ConfigureAwait(false)).Select(v => (string)v!).Order(StringComparer.Ordinal).ToArray());

    public Task<IReadOnlyList<string>> GroupsOfAsync(string device) => Guard<IReadOnlyList<string>>(async () =>
        (await Db.SetMembersAsync(keys.GroupsOf(device)).ConfigureAwait(false)).Select(v => (string)v!).Order(StringComparer.Ordinal).ToArray());

    public Task<DeviceEntry?> GetDeviceAsync(string device) => Guard(async () =>
    {
        var seen = await Db.HashGetAsync(keys.Devices, device).ConfigureAwait(false);
        var notBefore = await Db.HashGetAsync(keys.TokensNotBefore, device).ConfigureAwait(false);
        if (seen.IsNull && notBefore.IsNull) return null;
        return (DeviceEntry?)new DeviceEntry(!seen.IsNull,
            seen.IsNullOrEmpty ? null : DateTimeOffset.FromUnixTimeMilliseconds((long)seen),
            notBefore.IsNull ? null : DateTimeOffset.FromUnixTimeMilliseconds((long)notBefore));
    });

    public Task<IReadOnlyList<(string Group, int Members)>> GroupsAsync(string? after, int limit) => Guard<IReadOnlyList<(string, int)>>(async () =>
    {
        var list = new List<(string, int)>();
        var names = (await Db.SetMembersAsync(keys.GroupNames).ConfigureAwait(false)).Select(v => (string)v!)
            .Where(g => after is null || string.CompareOrdinal(g, after) > 0).Order(StringComparer.Ordinal).Take(limit);
        foreach (var g in names)
        {
            list.Add((g, (int)await Db.SetLengthAsync(keys.Group(g)).ConfigureAwait(false)));
        }
        return list;
    });

    public Task<IReadOnlyList<(string Device, DateTimeOffset? LastSeen)>> DevicesAsync(string? prefix, string? after, int limit, IReadOnlyList<TagFilter>? tags = null) =>
        Guard<IReadOnlyList<(string, DateTimeOffset?)>>(async () =>
        {
            if (tags is { Count: > 0 }) return await TaggedDevicesAsync(prefix, after, limit, tags).ConfigureAwait(false);
            // The index (device ids by value) from the cursor, or from the prefix: a page costs one ZRANGEBYLEX and one HMGET.
            var from = after is not null && (prefix is null || string.CompareOrdinal(after, prefix) >= 0) ? after : prefix;
            var exclusive = from is not null && from == after;
            var page = (await Db.SortedSetRangeByValueAsync(keys.DeviceIndex, from is null ? default : (RedisValue)from, default,
                    exclusive ? Exclude.Start : Exclude.None, Order.Ascending, 0, limit).ConfigureAwait(false))
                .Select(v => (string)v!)
                .TakeWhile(id => prefix is null || id.StartsWith(prefix, StringComparison.Ordinal))
                .ToArray();
            if (page.Length == 0) return [];
            var seen = await Db.HashGetAsync(keys.Devices, page.Select(id => (RedisValue)id).ToArray()).ConfigureAwait(false);
            return page.Select((id, i) => (id, seen[i].IsNullOrEmpty ? (DateTimeOffset?)null : DateTimeOffset.FromUnixTimeMilliseconds((long)seen[i]))).ToList();
        });

    /// <summary>Devices matching every filter: the intersection of each filter's index sets (a union over its readings).</summary>
    private async Task<IReadOnlyList<(string, DateTimeOffset?)>> TaggedDevicesAsync(string? prefix, string? after, int limit, IReadOnlyList<TagFilter> tags)
    {
        HashSet<string>? matching = null;
        foreach (var filter in tags)
        {
            var these = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (k, v) in filter.Readings)
            {
                foreach (var d in await Db.SetMembersAsync(keys.Tagged(k, v)).ConfigureAwait(false)) these.Add((string)d!);
            }
            if (matching is null) matching = these;
            else matching.IntersectWith(these);
            if (matching.Count == 0) return [];
        }
        var page = matching!.Where(id => (prefix is null || id.StartsWith(prefix, StringComparison.Ordinal)) && (after is null || string.CompareOrdinal(id, after) > 0))
            .Order(StringComparer.Ordinal).Take(limit).ToArray();
        if (page.Length == 0) return [];
        var seen = await Db.HashGetAsync(keys.Devices, page.Select(id => (RedisValue)id).ToArray()).ConfigureAwait(false);
        return page.Select((id, i) => (id, seen[i].IsNullOrEmpty ? (DateTimeOffset?)null : DateTimeOffset.FromUnixTimeMilliseconds((long)seen[i]))).ToList();
    }

    // ---- IStateStore: one hash per device; an update is optimistic (WATCH-like condition on the part's version) ---

    public Task<StateRecord> GetStateAsync(string device) => Guard(async () => ToState(await Db.HashGetAllAsync(keys.State(device)).ConfigureAwait(false)));

    private static StateRecord ToState(HashEntry[] entries)
    {
        if (entries.Length == 0) return StateRecord.Empty;
        var h = entries.ToDictionary(e => (string)e.Name!, e => e.Value);
        DateTimeOffset? At(string f) => h.TryGetValue(f, out var v) && !v.IsNullOrEmpty ? DateTimeOffset.FromUnixTimeMilliseconds((long)v) : null;
        return new StateRecord((string?)h.GetValueOrDefault("desired") ?? "{}", (string?)h.GetValueOrDefault("reported") ?? "{}",
            (long)h.GetValueOrDefault("dv", 0), (long)h.GetValueOrDefault("rv", 0), (long)h.GetValueOrDefault("av", 0), At("dat"), At("rat"));
    }

    public Task<StateWrite> UpdateStateAsync(string device, StatePart part, Func<string, StateEdit> edit, long? ifMatch, DateTimeOffset at) => Guard(async () =>
    {
        var key = keys.State(device);
        var (jsonField, versionField, atField) = part == StatePart.Desired ? ("desired", "dv", "dat") : ("reported", "rv", "rat");
        while (true)
        {
            var current = ToState(await DurableDb.HashGetAllAsync(key).ConfigureAwait(false));
            var write = current.Apply(part, edit, ifMatch, at);
            if (write.Outcome != StateWriteOutcome.Written) return write;
            var version = current.Version(part);
            var tx = DurableDb.CreateTransaction();
            // Written only if nobody changed this part since it was read; otherwise read again (or, with If-Match, refuse).
            tx.AddCondition(version == 0 ? Condition.HashNotExists(key, versionField) : Condition.HashEqual(key, versionField, version));
            _ = tx.HashSetAsync(key, [new HashEntry(jsonField, write.Record.Part(part)), new HashEntry(versionField, version + 1), new HashEntry(atField, Ms(at))]);
            if (await tx.ExecuteAsync().ConfigureAwait(false))
            {
                await ReplicatedAsync().ConfigureAwait(false);
                return write;
            }
        }
    });

    private const string AckStateScript = """
        if tonumber(redis.call('HGET', KEYS[1], 'av') or '0') < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'av', ARGV[1]) end
        return 1
        """;

    public Task AckStateAsync(string device, long version) => Guard(() => Db.ScriptEvaluateAsync(AckStateScript, [keys.State(device)], [version]));

    // ---- IStoreHealth ------------------------------------------------------------------------------------------------

    public async Task<bool> IsWritableAsync()
    {
        try
        {
            await Db.StringSetAsync(keys.Prefix + "health", "ok", TimeSpan.FromSeconds(5)).WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
            return true;
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            return false;
        }
    }

    public long PendingMessages
    {
        get
        {
            try
            {
                return Db.SortedSetLength(keys.Expiry);
            }
            catch (RedisException)
            {
                return 0;
            }
        }
    }
}

/// <summary>A device as Redis knows it; a forgotten device may still have a revocation (then not <see cref="Known"/>).</summary>
internal sealed record DeviceEntry(bool Known, DateTimeOffset? LastSeen, DateTimeOffset? TokensNotBefore);
