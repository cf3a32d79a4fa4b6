using System.Net.WebSockets;
using StackExchange.Redis;
using DeviceGate.Storage;

namespace DeviceGate.Cluster;

/// <summary>
/// The store in cluster mode: outbox, statuses, devices, groups and idempotency keys in Redis, shared by every
/// node. Each change to one device's keys is one Lua script in that device's hash slot, so it is atomic on a single
/// Redis and in a Redis Cluster alike; what spans devices (the directory, group lists, the tag and expiry indexes,
/// the id → device pointers, a device sender's stored bytes) is written by single-key commands or scripts of their
/// own slot, after or beside the device's script, in an order that a crash between them leaves harmless (a pointer
/// or index entry to nothing, which readers skip). A write Redis cannot take throws
/// <see cref="StoreUnavailableException"/> (the API answers 503, nothing is acknowledged).
/// </summary>
internal sealed class RedisStore(IConnectionMultiplexer redis, RedisKeys keys, TimeSpan statusRetention, ReplicationBarrier? replication = null)
    : IMessageStore, IDirectoryStore, IStateStore, IStoreHealth
{
    private IDatabase Db => redis.GetDatabase();

    // Durable writes (ttl sends, state writes, cancels): on the replication barrier's own connection when
    // DeviceGate:Redis:MinReplicas > 0, so its WAIT covers them.
    private IDatabase DurableDb => replication?.Db ?? Db;

    private long RetentionMs => (long)statusRetention.TotalMilliseconds;

    /// <summary>With MinReplicas, a durable write is acknowledged only once WAIT confirms it on each primary holding <paramref name="written"/>; otherwise 503 (it may survive).</summary>
    private async Task ReplicatedAsync(params RedisKey[] written)
    {
        if (replication is null) return;
        bool confirmed;
        try
        {
            confirmed = await replication.ConfirmAsync(written).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not RedisConnectionException and not RedisTimeoutException)
        {
            // No primary known for a key's slot right now (a shard failing over), or WAIT refused by a node just
            // demoted: not confirmed, which is a 503 like a WAIT that timed out.
            RefreshTopology();
            confirmed = false;
        }
        if (!confirmed) throw new StoreUnavailableException(replication.TimedOut());
    }

    private static string Iso(DateTimeOffset t) => Timestamps.Iso(t);
    private static long Ms(DateTimeOffset t) => t.ToUnixTimeMilliseconds();

    // Answers that mean "this shard cannot take it now" (a Redis Cluster failing over, a replica still loading).
    private static readonly string[] Unavailable = ["READONLY", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN", "LOADING", "NOREPLICAS"];

    private async Task<T> Guard<T>(Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (RedisCommandException e) when (e.Message.StartsWith("Command cannot be issued to a replica", StringComparison.Ordinal))
        {
            // StackExchange.Redis's slot map still names a primary that a failover demoted; it refreshes on MOVED, not
            // on this (its issue #2181), so it is asked to now rather than at its next periodic check.
            RefreshTopology();
            throw new StoreUnavailableException(e);
        }
        catch (Exception e) when (e is RedisConnectionException or RedisTimeoutException
                                      || (e is RedisServerException && Unavailable.Any(p => e.Message.StartsWith(p, StringComparison.Ordinal))))
        {
            if (e.Message.StartsWith("READONLY", StringComparison.Ordinal)) RefreshTopology();
            throw new StoreUnavailableException(e);
        }
    }

    private long _refreshedAt;

    /// <summary>Asks both connections to read the topology again, at most once a second.</summary>
    private void RefreshTopology()
    {
        var now = Environment.TickCount64;
        var last = Interlocked.Read(ref _refreshedAt);
        if (now - last < 1000 || Interlocked.CompareExchange(ref _refreshedAt, now, last) != last) return;
        _ = redis.ConfigureAsync().ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
        if (replication is not null) _ = replication.RefreshTopologyAsync().ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
    }

    private Task Guard(Func<Task> call) => Guard(async () =>
    {
        await call().ConfigureAwait(false);
        return true;
    });

    // ---- Lua shared by the device scripts --------------------------------------------------------------------------

    /// <summary>
    /// Lua: a pending message becomes final: one more history entry, the payload dropped, and Redis forgets the record
    /// after the status retention. Returns who sent it and how many payload bytes it held (they stop counting against
    /// a device sender's DeviceStoredBytes, released by the caller: the counter has its sender's slot).
    /// </summary>
    private const string Finish = """
        local function finish(key, status, ms, iso, retention)
          local sender = redis.call('HGET', key, 'sender') or ''
          local bytes = redis.call('HSTRLEN', key, 'data')
          local h = string.sub(redis.call('HGET', key, 'history'), 1, -2) .. ',{"status":"' .. status .. '","at":"' .. iso .. '"}]'
          redis.call('HSET', key, 'status', status, 'pending', '0', 'updated', ms, 'history', h)
          redis.call('HDEL', key, 'data', 'raw')
          redis.call('PEXPIRE', key, retention)
          return {sender, bytes}
        end
        """;

    // ---- cross-slot companions: single-key commands or scripts of their own slot --------------------------------

    /// <summary>Lua, on a device sender's counter: reserve <c>ARGV[1]</c> bytes unless that passes the cap; the counter outlives the sender's last pending message by nothing (so a reservation a crash stranded heals).</summary>
    private const string ReserveScript = """
        if tonumber(redis.call('GET', KEYS[1]) or '0') + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return 0 end
        redis.call('INCRBY', KEYS[1], ARGV[1])
        if redis.call('PEXPIRETIME', KEYS[1]) < tonumber(ARGV[3]) then redis.call('PEXPIREAT', KEYS[1], ARGV[3]) end
        return 1
        """;

    private const string ReleaseScript = """
        if redis.call('DECRBY', KEYS[1], ARGV[1]) <= 0 then redis.call('DEL', KEYS[1]) end
        return 1
        """;

    private Task ReleaseAsync(IDatabaseAsync db, string sender, long bytes) =>
        sender.Length == 0 || sender == DeviceId.Server || bytes <= 0 ? Task.CompletedTask : OneSlot.EvaluateAsync(db, ReleaseScript, [keys.SenderBytes(sender)], [bytes]);


    /// <summary>Lua, on the directory's slot: the device is known (a message or a membership made it so).</summary>
    private const string KnownScript = """
        redis.call('HSETNX', KEYS[1], ARGV[1], '')
        redis.call('ZADD', KEYS[2], 0, ARGV[1])
        return 1
        """;

    private Task KnownAsync(IDatabaseAsync db, string device) => OneSlot.EvaluateAsync(db, KnownScript, [keys.Devices, keys.DeviceIndex], [device]);

    private Task UnindexExpiryAsync(IDatabaseAsync db, string device, string id) => db.SortedSetRemoveAsync(keys.ExpiryOf(device), RedisKeys.ExpiryMember(device, id));

    /// <summary>How long the id → device pointer lives: until the message expires, then the status retention.</summary>
    private TimeSpan PointerLife(DateTimeOffset expires)
    {
        var left = expires - DateTimeOffset.UtcNow;
        return (left > TimeSpan.Zero ? left : TimeSpan.Zero) + statusRetention;
    }

    // ---- IMessageStore ------------------------------------------------------------------------------------------

    // KEYS: message, outbox, sequence, idempotency, recent, state (all of the device's slot).
    private const string AcceptScript = Finish + "\n" + """
        if ARGV[15] == '1' then
          local existing = redis.call('GET', KEYS[4])
          if existing then
            local m = redis.call('HMGET', ARGV[14] .. existing, 'status', 'expires')
            return {'dup', existing, m[1] or 'expired', m[2] or '0', ''}
          end
        end
        local sv = tonumber(ARGV[16])
        if sv == 0 and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[12]) then return {'full', '', '', '0', ''} end
        local replaced = ''
        if sv > 0 then
          -- Latest wins: the state hash names the device's pending state message (mid, at version mv).
          local cur = redis.call('HMGET', KEYS[6], 'mid', 'mv', 'av')
          local live = cur[1] and redis.call('HGET', ARGV[14] .. cur[1], 'pending') == '1'
          if (live and tonumber(cur[2]) >= sv) or tonumber(cur[3] or '0') >= sv then
            redis.call('HSET', KEYS[1], 'device', ARGV[2], 'sender', ARGV[3], 'grp', '', 'kind', ARGV[5], 'created', ARGV[9],
              'expires', ARGV[10], 'updated', ARGV[9], 'sv', ARGV[16], 'status', 'superseded', 'pending', '0', 'attempts', '0', 'rawBinary', '0',
              'history', string.sub(ARGV[11], 1, -2) .. ',{"status":"superseded","at":"' .. ARGV[17] .. '"}]')
            redis.call('PEXPIRE', KEYS[1], ARGV[13])
            redis.call('LPUSH', KEYS[5], ARGV[1])
            redis.call('LTRIM', KEYS[5], 0, 99)
            return {'superseded', ARGV[1], 'superseded', '0', ''}
          end
          if live then
            finish(ARGV[14] .. cur[1], 'superseded', ARGV[9], ARGV[17], ARGV[13])
            redis.call('ZREM', KEYS[2], cur[1])
            replaced = cur[1]
          end
          redis.call('HSET', KEYS[6], 'mid', ARGV[1], 'mv', ARGV[16])
        end
        local seq = redis.call('INCR', KEYS[3])
        redis.call('HSET', KEYS[1], 'device', ARGV[2], 'sender', ARGV[3], 'grp', ARGV[4], 'kind', ARGV[5], 'data', ARGV[6],
          'raw', ARGV[7], 'rawBinary', ARGV[8], 'created', ARGV[9], 'expires', ARGV[10], 'updated', ARGV[9], 'sv', ARGV[16],
          'status', 'queued', 'pending', '1', 'attempts', '0', 'history', ARGV[11])
        redis.call('ZADD', KEYS[2], seq, ARGV[1])
        redis.call('LPUSH', KEYS[5], ARGV[1])
        redis.call('LTRIM', KEYS[5], 0, 99)
        if ARGV[15] == '1' then redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[13]) end
        if seq == 1 then return {'ok', ARGV[1], 'queued', '1', replaced} end
        return {'ok', ARGV[1], 'queued', '0', replaced}
        """;

    // rawBinary flags: 1 the raw form is binary, 2 a separate raw copy is stored (written before the JSON-string flag
    // existed), 4 the raw form is the string that data (a JSON string) denotes.
    public Task<AcceptResult> AcceptAsync(StoredMessage m, string? idempotencyKey, int maxQueuedPerDevice, long maxSenderBytes = long.MaxValue) => Guard(async () =>
    {
        var db = DurableDb;
        var bytes = m.Data.Bytes.Length;
        // A device sender's bytes are reserved first (their counter has the sender's slot) and given back unless stored.
        var quota = m.From != DeviceId.Server && maxSenderBytes != long.MaxValue;
        if (quota && (int)await OneSlot.EvaluateAsync(db, ReserveScript, [keys.SenderBytes(m.From)],
                [bytes, maxSenderBytes, Math.Max(Ms(m.ExpiresAt), Ms(DateTimeOffset.UtcNow)) + 60_000]).ConfigureAwait(false) == 0)
        {
            return new AcceptResult(AcceptOutcome.QuotaExceeded, m.Id, MessageStatus.Queued);
        }
        var flags = (m.Data.RawType == WebSocketMessageType.Binary ? 1 : 0) | (m.Data.RawIsJsonString ? 4 : 0);
        var messageKey = keys.Message(m.Device, m.Id);
        // The pointer and the expiry entry go beside the script: either may point at a message the script refused,
        // which readers skip and the refusal below removes.
        var pointer = db.StringSetAsync(keys.MessageDevice(m.Id), m.Device, PointerLife(m.ExpiresAt));
        var expiry = db.SortedSetAddAsync(keys.ExpiryOf(m.Device), RedisKeys.ExpiryMember(m.Device, m.Id), Ms(m.ExpiresAt));
        var script = OneSlot.EvaluateAsync(db, AcceptScript,
            [messageKey, keys.Outbox(m.Device), keys.Sequence(m.Device), keys.Idempotency(m.Device, idempotencyKey ?? ""), keys.Recent(m.Device), keys.State(m.Device)],
            [
                m.Id, m.Device, m.From, m.Group ?? "", (int)m.Data.Kind, m.Data.Bytes.ToArray(), Array.Empty<byte>(), flags,
                Ms(m.CreatedAt), Ms(m.ExpiresAt), StatusChange.FirstHistoryJson(MessageStatus.Queued, m.CreatedAt),
                maxQueuedPerDevice, RetentionMs, keys.MessagePrefix(m.Device), idempotencyKey is null ? "0" : "1", m.StateVersion, Iso(m.CreatedAt),
            ]);
        try
        {
            await Task.WhenAll(pointer, expiry, script).ConfigureAwait(false);
        }
        catch when (quota && !script.IsCompletedSuccessfully)
        {
            // Not stored: the reservation goes back (when only a companion write failed, the message is stored and keeps it).
            _ = ReleaseAsync(db, m.From, bytes).ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
            throw;
        }
        var r = (RedisResult[])(await script.ConfigureAwait(false))!;
        var outcome = (string)r[0]!;
        var id = (string)r[1]!;
        var after = new List<Task>();
        if (outcome != "ok" && quota) after.Add(ReleaseAsync(db, m.From, bytes));
        switch (outcome)
        {
            case "ok":
                if ((string)r[3]! == "1") after.Add(KnownAsync(db, m.Device));
                if ((string)r[4]! is { Length: > 0 } replaced) after.Add(UnindexExpiryAsync(db, m.Device, replaced));
                break;
            case "superseded":
                after.Add(UnindexExpiryAsync(db, m.Device, m.Id));
                break;
            case "dup" when id != m.Id:
                after.Add(db.KeyDeleteAsync(keys.MessageDevice(m.Id)));
                after.Add(UnindexExpiryAsync(db, m.Device, m.Id));
                // The first attempt may have stopped before its pointer and expiry entry were written.
                var expires = DateTimeOffset.FromUnixTimeMilliseconds((long)r[3]);
                after.Add(db.StringSetAsync(keys.MessageDevice(id), m.Device, PointerLife(expires)));
                if ((string)r[2]! is MessageStatus.Queued or MessageStatus.Sent) after.Add(db.SortedSetAddAsync(keys.ExpiryOf(m.Device), RedisKeys.ExpiryMember(m.Device, id), Ms(expires)));
                break;
            case "dup":
                break;
            default:
                after.Add(db.KeyDeleteAsync(keys.MessageDevice(m.Id)));
                after.Add(UnindexExpiryAsync(db, m.Device, m.Id));
                break;
        }
        await Task.WhenAll(after).ConfigureAwait(false);
        // A duplicate is confirmed too: the first attempt may have been answered 503 before its replicas had it.
        if (outcome is "ok" or "superseded" or "dup") await ReplicatedAsync(keys.Message(m.Device, id), keys.MessageDevice(id), keys.ExpiryOf(m.Device)).ConfigureAwait(false);
        return outcome switch
        {
            "dup" => new AcceptResult(AcceptOutcome.Duplicate, id, (string)r[2]!),
            "full" => new AcceptResult(AcceptOutcome.OutboxFull, m.Id, MessageStatus.Queued),
            "superseded" => new AcceptResult(AcceptOutcome.Superseded, m.Id, MessageStatus.Superseded),
            _ => new AcceptResult(AcceptOutcome.Accepted, m.Id, MessageStatus.Queued),
        };
    });

    public Task<IReadOnlyList<StoredMessage>> LoadPendingAsync(string device, DateTimeOffset now) => Guard<IReadOnlyList<StoredMessage>>(async () =>
    {
        var ids = await Db.SortedSetRangeByRankAsync(keys.Outbox(device)).ConfigureAwait(false);
        var hashes = await ReadMessagesAsync(Db, device, ids.Select(i => (string)i!).ToArray()).ConfigureAwait(false);
        var list = new List<StoredMessage>(ids.Length);
        for (var i = 0; i < ids.Length; i++)
        {
            var h = hashes[i];
            if (h.Count == 0 || h["pending"] != "1" || (long)h["expires"] <= Ms(now)) continue;
            list.Add(ToStored(ids[i]!, device, h));
        }
        return list;
    });

    private async Task<Dictionary<string, RedisValue>[]> ReadMessagesAsync(IDatabase db, string device, string[] ids)
    {
        var batch = db.CreateBatch();
        var reads = ids.Select(id => batch.HashGetAllAsync(keys.Message(device, id))).ToArray();
        batch.Execute();
        var hashes = await Task.WhenAll(reads).ConfigureAwait(false);
        return hashes.Select(h => h.ToDictionary(e => (string)e.Name!, e => e.Value)).ToArray();
    }

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

    // KEYS: message, outbox. Returns {changed, sender, bytes} (sender and bytes when it became final).
    private const string RecordScript = Finish + "\n" + """
        if redis.call('HGET', KEYS[1], 'pending') ~= '1' then return {0, '', 0} end
        if ARGV[1] == 'sent' then redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
        if ARGV[2] == '1' then
          local r = finish(KEYS[1], ARGV[1], ARGV[3], ARGV[4], ARGV[6])
          redis.call('ZREM', KEYS[2], ARGV[5])
          return {1, r[1], r[2]}
        end
        local h = string.sub(redis.call('HGET', KEYS[1], 'history'), 1, -2) .. ',{"status":"' .. ARGV[1] .. '","at":"' .. ARGV[4] .. '"}]'
        redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated', ARGV[3], 'history', h)
        return {1, '', 0}
        """;

    public Task RecordAsync(string device, string id, string status, bool final, DateTimeOffset at) => Guard(async () =>
    {
        var db = Db;
        var script = OneSlot.EvaluateAsync(db, RecordScript, [keys.Message(device, id), keys.Outbox(device)],
            [status, final ? "1" : "0", Ms(at), Iso(at), id, RetentionMs]);
        var unindex = final ? UnindexExpiryAsync(db, device, id) : Task.CompletedTask;
        await Task.WhenAll(script, unindex).ConfigureAwait(false);
        var r = (RedisResult[])(await script.ConfigureAwait(false))!;
        if ((int)r[0] == 1) await ReleaseAsync(db, (string)r[1]!, (long)r[2]).ConfigureAwait(false);
    });

    public Task<IReadOnlyList<MessageRecord>> RecentAsync(string device, int limit) => Guard<IReadOnlyList<MessageRecord>>(async () =>
    {
        var ids = (await Db.ListRangeAsync(keys.Recent(device), 0, limit - 1).ConfigureAwait(false)).Select(i => (string)i!).ToArray();
        var hashes = await ReadMessagesAsync(Db, device, ids).ConfigureAwait(false);
        return ids.Select((id, i) => ToRecord(id, hashes[i])).OfType<MessageRecord>().ToList();
    });

    public Task<MessageRecord?> GetAsync(string id) => Guard(async () =>
    {
        if (await DeviceOfAsync(Db, id).ConfigureAwait(false) is not { } device) return null;
        return ToRecord(id, (await ReadMessagesAsync(Db, device, [id]).ConfigureAwait(false))[0]);
    });

    private async Task<string?> DeviceOfAsync(IDatabase db, string id) => (string?)await db.StringGetAsync(keys.MessageDevice(id)).ConfigureAwait(false);

    private static MessageRecord? ToRecord(string id, Dictionary<string, RedisValue> h) =>
        h.Count == 0 || !h.ContainsKey("history")
            ? null
            : new MessageRecord(id, (string)h["device"]!, (string)h["status"]!, DateTimeOffset.FromUnixTimeMilliseconds((long)h["created"]),
                DateTimeOffset.FromUnixTimeMilliseconds((long)h["updated"]), (int)h["attempts"], StatusChange.ParseHistory((string)h["history"]!));

    // KEYS: message, outbox.
    private const string CancelScript = Finish + "\n" + """
        local status = redis.call('HGET', KEYS[1], 'status')
        if not status then return {'nf', '', 0} end
        if status ~= 'queued' then return {'sent', '', 0} end
        local r = finish(KEYS[1], 'cancelled', ARGV[1], ARGV[2], ARGV[4])
        redis.call('ZREM', KEYS[2], ARGV[3])
        return {'ok', r[1], r[2]}
        """;

    public Task<CancelOutcome> CancelAsync(string id, DateTimeOffset at) => Guard(async () =>
    {
        var db = DurableDb;
        if (await DeviceOfAsync(db, id).ConfigureAwait(false) is not { } device) return CancelOutcome.NotFound;
        var r = (RedisResult[])(await OneSlot.EvaluateAsync(db, CancelScript, [keys.Message(device, id), keys.Outbox(device)],
            [Ms(at), Iso(at), id, RetentionMs]).ConfigureAwait(false))!;
        var outcome = (string)r[0]!;
        if (outcome == "ok")
        {
            await Task.WhenAll(UnindexExpiryAsync(db, device, id), ReleaseAsync(db, (string)r[1]!, (long)r[2])).ConfigureAwait(false);
            await ReplicatedAsync(keys.Message(device, id)).ConfigureAwait(false);
        }
        return outcome switch
        {
            "ok" => CancelOutcome.Cancelled,
            "sent" => CancelOutcome.AlreadySent,
            _ => CancelOutcome.NotFound,
        };
    });

    // KEYS: message, outbox. One due message of one device.
    private const string ExpireScript = Finish + "\n" + """
        if redis.call('HGET', KEYS[1], 'pending') ~= '1' then return {0, '', 0} end
        local r = finish(KEYS[1], 'expired', ARGV[1], ARGV[2], ARGV[4])
        redis.call('ZREM', KEYS[2], ARGV[3])
        return {1, r[1], r[2]}
        """;

    /// <summary>Each expiry bucket's due entries (1,000 a bucket per call), each expired by a script of its device's slot.</summary>
    public Task<IReadOnlyList<(string Id, string Device)>> ExpireDueAsync(DateTimeOffset now) => Guard<IReadOnlyList<(string, string)>>(async () =>
    {
        var db = Db;
        var due = await Task.WhenAll(Enumerable.Range(0, RedisKeys.ExpiryBuckets).Select(b =>
            db.SortedSetRangeByScoreAsync(keys.Expiry(b), double.NegativeInfinity, Ms(now), Exclude.None, Order.Ascending, 0, 1000))).ConfigureAwait(false);
        var entries = due.SelectMany(members => members).Select(v => ((string)v!).Split('\n')).Where(p => p.Length == 2).Select(p => (Device: p[0], Id: p[1])).ToArray();
        var expired = await Task.WhenAll(entries.Select(async e =>
        {
            var r = (RedisResult[])(await OneSlot.EvaluateAsync(db, ExpireScript, [keys.Message(e.Device, e.Id), keys.Outbox(e.Device)],
                [Ms(now), Iso(now), e.Id, RetentionMs]).ConfigureAwait(false))!;
            await Task.WhenAll(UnindexExpiryAsync(db, e.Device, e.Id), (int)r[0] == 1 ? ReleaseAsync(db, (string)r[1]!, (long)r[2]) : Task.CompletedTask).ConfigureAwait(false);
            return (int)r[0] == 1;
        })).ConfigureAwait(false);
        return entries.Where((_, i) => expired[i]).Select(e => (e.Id, e.Device)).ToList();
    });

    /// <summary>Redis forgets final records and idempotency keys itself (PEXPIRE, PX), the status retention after they were written.</summary>
    public Task PurgeAsync(DateTimeOffset before) => Task.CompletedTask;

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

    // KEYS: devices, device index (the directory's slot).
    private const string SeenScript = """
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        redis.call('ZADD', KEYS[2], 0, ARGV[1])
        return 1
        """;

    public Task SaveLastSeenAsync(string device, DateTimeOffset at) => Guard(() => OneSlot.EvaluateAsync(Db, SeenScript, [keys.Devices, keys.DeviceIndex], [device, Ms(at)]));

    // KEYS: the device's groups (its slot). The cap is checked with the add.
    private const string DeviceGroupsScript = """
        if ARGV[2] == '1' then
          if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
          if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
          redis.call('SADD', KEYS[1], ARGV[1])
        else
          redis.call('SREM', KEYS[1], ARGV[1])
        end
        return 1
        """;

    // KEYS: the group's members, the group names (the groups' slot).
    private const string GroupMembersScript = """
        if ARGV[2] == '1' then
          redis.call('SADD', KEYS[1], ARGV[1])
          redis.call('SADD', KEYS[2], ARGV[3])
        else
          redis.call('SREM', KEYS[1], ARGV[1])
          if redis.call('SCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[3]) end
        end
        return 1
        """;

    /// <summary>
    /// Two slots, two steps: the device's side first (it holds the cap), then the group's list. A crash between them
    /// leaves the device thinking it is a member while the group does not list it; the same call again completes it.
    /// </summary>
    public Task<bool> SetMembershipAsync(string group, string device, bool member, int maxGroups = int.MaxValue) => Guard(async () =>
    {
        var db = Db;
        var flag = member ? "1" : "0";
        var mine = OneSlot.EvaluateAsync(db, DeviceGroupsScript, [keys.GroupsOf(device)], [group, flag, maxGroups]);
        if (member && (int)await mine.ConfigureAwait(false) == 0) return false;
        await Task.WhenAll(mine, OneSlot.EvaluateAsync(db, GroupMembersScript, [keys.Group(group), keys.GroupNames], [device, flag, group]),
            member ? KnownAsync(db, device) : Task.CompletedTask).ConfigureAwait(false);
        return true;
    });

    // KEYS: tokens-not-before, devices, device index (the directory's slot).
    private const string RevokeScript = """
        redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
        redis.call('HSETNX', KEYS[2], ARGV[1], '')
        redis.call('ZADD', KEYS[3], 0, ARGV[1])
        return 1
        """;

    public Task RevokeTokensAsync(string device, DateTimeOffset at) => Guard(() =>
        OneSlot.EvaluateAsync(Db, RevokeScript, [keys.TokensNotBefore, keys.Devices, keys.DeviceIndex], [device, Ms(at)]));

    // KEYS: groups-of, outbox, state, tags, session, sequence (the device's slot). Cancels what is pending and returns
    // {groups, tags (flat), cancelled (id, sender, bytes)...} for the other slots' parts.
    private const string ForgetScript = Finish + "\n" + """
        local groups = redis.call('SMEMBERS', KEYS[1])
        local tags = redis.call('HGETALL', KEYS[4])
        local cancelled = {}
        for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
          local key = ARGV[1] .. id
          if redis.call('HGET', key, 'pending') == '1' then
            local r = finish(key, 'cancelled', ARGV[2], ARGV[3], ARGV[4])
            table.insert(cancelled, id)
            table.insert(cancelled, r[1])
            table.insert(cancelled, r[2])
          end
        end
        redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
        return {groups, tags, cancelled}
        """;

    // KEYS: devices, device index (the directory's slot).
    private const string ForgetKnownScript = """
        redis.call('HDEL', KEYS[1], ARGV[1])
        redis.call('ZREM', KEYS[2], ARGV[1])
        return 1
        """;

    /// <summary>The device's own keys in one script; then, from what it returned, its groups' lists, the tag index, the directory and the expiry index.</summary>
    public Task ForgetDeviceAsync(string device) => Guard(async () =>
    {
        var db = Db;
        var now = DateTimeOffset.UtcNow;
        var r = (RedisResult[])(await OneSlot.EvaluateAsync(db, ForgetScript,
            [keys.GroupsOf(device), keys.Outbox(device), keys.State(device), keys.Tags(device), keys.Session(device), keys.Sequence(device)],
            [keys.MessagePrefix(device), Ms(now), Iso(now), RetentionMs]).ConfigureAwait(false))!;
        var after = new List<Task> { OneSlot.EvaluateAsync(db, ForgetKnownScript, [keys.Devices, keys.DeviceIndex], [device]) };
        foreach (var g in (RedisResult[])r[0]!)
        {
            after.Add(OneSlot.EvaluateAsync(db, GroupMembersScript, [keys.Group((string)g!), keys.GroupNames], [device, "0", (string)g!]));
        }
        var tags = (RedisResult[])r[1]!;
        for (var i = 0; i + 1 < tags.Length; i += 2) after.Add(db.SetRemoveAsync(keys.Tagged((string)tags[i]!, (string)tags[i + 1]!), device));
        var cancelled = (RedisResult[])r[2]!;
        for (var i = 0; i + 2 < cancelled.Length; i += 3)
        {
            after.Add(UnindexExpiryAsync(db, device, (string)cancelled[i]!));
            after.Add(ReleaseAsync(db, (string)cancelled[i + 1]!, (long)cancelled[i + 2]));
        }
        await Task.WhenAll(after).ConfigureAwait(false);
    });

    // KEYS: the device's tags. Replaces them; returns the old ones (flat) for the index.
    private const string SetTagsScript = """
        local old = redis.call('HGETALL', KEYS[1])
        redis.call('DEL', KEYS[1])
        for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
        return old
        """;

    /// <summary>
    /// The device's tags in its slot; then the index: the new pairs added, the old ones that are gone removed. The
    /// index may hold a stale pair for a moment (two writers, or a crash between the steps), never lack a current
    /// one once the call returned; listings check each candidate's tags, so a stale pair lists nothing.
    /// </summary>
    public Task SetTagsAsync(string device, IReadOnlyDictionary<string, string> tags) => Guard(async () =>
    {
        var db = Db;
        var args = new List<RedisValue>();
        foreach (var (k, v) in tags)
        {
            args.Add(k);
            args.Add(v);
        }
        var old = (RedisResult[])(await OneSlot.EvaluateAsync(db, SetTagsScript, [keys.Tags(device)], args.ToArray()).ConfigureAwait(false))!;
        var after = new List<Task> { KnownAsync(db, device) };
        for (var i = 0; i + 1 < old.Length; i += 2)
        {
            var (k, v) = ((string)old[i]!, (string)old[i + 1]!);
            if (!(tags.TryGetValue(k, out var now) && now == v)) after.Add(db.SetRemoveAsync(keys.Tagged(k, v), device));
        }
        foreach (var (k, v) in tags) after.Add(db.SetAddAsync(keys.Tagged(k, v), device));
        await Task.WhenAll(after).ConfigureAwait(false);
    });

    public Task<IReadOnlyDictionary<string, string>> TagsAsync(string device) => Guard<IReadOnlyDictionary<string, string>>(async () =>
        (await Db.HashGetAllAsync(keys.Tags(device)).ConfigureAwait(false)).ToDictionary(e => (string)e.Name!, e => (string)e.Value!, StringComparer.Ordinal));

    // KEYS: the device's session. Redis expires the key itself when the session lapses; "take" = 0 writes only over the same owner.
    private const string PutSessionScript = """
        if ARGV[4] == '0' and redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'subscriptions', ARGV[2], 'until', ARGV[3])
        redis.call('PEXPIREAT', KEYS[1], ARGV[3])
        return 1
        """;

    public Task PutSessionAsync(string device, RememberedSession session, bool take) => Guard(() =>
        OneSlot.EvaluateAsync(Db, PutSessionScript, [keys.Session(device)], [session.Owner, session.Subscriptions, Ms(session.Until), take ? "1" : "0"]));

    public Task DeleteSessionAsync(string device) => Guard(() => Db.KeyDeleteAsync(keys.Session(device)));

    public Task<RememberedSession?> GetSessionAsync(string device, DateTimeOffset now) => Guard<RememberedSession?>(async () =>
    {
        var fields = (await Db.HashGetAllAsync(keys.Session(device)).ConfigureAwait(false)).ToDictionary(e => (string)e.Name!, e => e.Value);
        if (!fields.TryGetValue("owner", out var owner) || !fields.TryGetValue("subscriptions", out var subscriptions) || !fields.TryGetValue("until", out var until)) return null;
        var at = DateTimeOffset.FromUnixTimeMilliseconds((long)until);
        return at > now ? new RememberedSession(owner!, subscriptions!, at) : null;
    });

    public Task<int> CountQueuedAsync(string device, DateTimeOffset now) => Guard(async () =>
    {
        var ids = (await Db.SortedSetRangeByRankAsync(keys.Outbox(device)).ConfigureAwait(false)).Select(i => (string)i!).ToArray();
        if (ids.Length == 0) return 0;
        var batch = Db.CreateBatch();
        var reads = ids.Select(id => batch.HashGetAsync(keys.Message(device, id), "expires")).ToArray();
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

    /// <summary>
    /// Devices matching every filter: the intersection of each filter's index sets (a union over its readings), each
    /// candidate then checked against its own tags (the index is a hint that may hold a stale pair).
    /// </summary>
    private async Task<IReadOnlyList<(string, DateTimeOffset?)>> TaggedDevicesAsync(string? prefix, string? after, int limit, IReadOnlyList<TagFilter> tags)
    {
        var db = Db;
        HashSet<string>? matching = null;
        foreach (var filter in tags)
        {
            var these = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (k, v) in filter.Readings)
            {
                foreach (var d in await db.SetMembersAsync(keys.Tagged(k, v)).ConfigureAwait(false)) these.Add((string)d!);
            }
            if (matching is null) matching = these;
            else matching.IntersectWith(these);
            if (matching.Count == 0) return [];
        }
        var candidates = matching!.Where(id => (prefix is null || id.StartsWith(prefix, StringComparison.Ordinal)) && (after is null || string.CompareOrdinal(id, after) > 0))
            .Order(StringComparer.Ordinal).ToArray();
        var page = new List<string>(limit);
        foreach (var chunk in candidates.Chunk(Math.Max(limit, 16)))
        {
            var read = await Task.WhenAll(chunk.Select(d => db.HashGetAllAsync(keys.Tags(d)))).ConfigureAwait(false);
            for (var i = 0; i < chunk.Length && page.Count < limit; i++)
            {
                if (TagFilter.MatchesAll(tags, read[i].ToDictionary(e => (string)e.Name!, e => (string)e.Value!, StringComparer.Ordinal))) page.Add(chunk[i]);
            }
            if (page.Count >= limit) break;
        }
        if (page.Count == 0) return [];
        var seen = await db.HashGetAsync(keys.Devices, page.Select(id => (RedisValue)id).ToArray()).ConfigureAwait(false);
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
                await ReplicatedAsync(key).ConfigureAwait(false);
                return write;
            }
        }
    });

    private const string AckStateScript = """
        if tonumber(redis.call('HGET', KEYS[1], 'av') or '0') < tonumber(ARGV[1]) then redis.call('HSET', KEYS[1], 'av', ARGV[1]) end
        return 1
        """;

    public Task AckStateAsync(string device, long version) => Guard(() => OneSlot.EvaluateAsync(Db, AckStateScript, [keys.State(device)], [version]));

    // ---- IStoreHealth ------------------------------------------------------------------------------------------------

    public async Task<bool> IsWritableAsync()
    {
        try
        {
            await Db.StringSetAsync(keys.Health, "ok", TimeSpan.FromSeconds(5)).WaitAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
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
                var db = Db;
                var counts = Enumerable.Range(0, RedisKeys.ExpiryBuckets).Select(b => db.SortedSetLengthAsync(keys.Expiry(b))).ToArray();
                db.WaitAll(counts);
                return counts.Sum(c => c.Result);
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
