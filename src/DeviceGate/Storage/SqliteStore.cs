using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Data.Sqlite;

namespace DeviceGate.Storage;

/// <summary>
/// The embedded store: one SQLite file (WAL) in the data folder. Every write goes through one writer that commits
/// whatever has queued up in one transaction (group commit), so durability costs one fsync per batch, not per
/// message. Reads use their own pooled connections and never wait for the writer.
/// </summary>
internal sealed class SqliteStore : IMessageStore, IDirectoryStore, IStateStore, IStoreHealth, IAsyncDisposable
{
    public const string FileName = "devicegate.db";
    private const int MaxBatch = 512;

    private readonly string _connectionString;
    // Synchronous continuations: a write wakes the blocked writer thread directly, not through a busy thread pool.
    private readonly Channel<WriteOp> _writes = Channel.CreateUnbounded<WriteOp>(new UnboundedChannelOptions { SingleReader = true, AllowSynchronousContinuations = true });
    private readonly Dictionary<string, int> _pendingCounts = new(StringComparer.Ordinal);
    // Devices that may have pending messages, each with a generation bumped by every message queued for it: a connect
    // of a device not in it reads nothing from the database (most connects). Readable from any thread, unlike the
    // counts (the writer's alone); an entry goes only when a read found nothing and no message came meanwhile.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _mayHavePending = new(StringComparer.Ordinal);
    // Payload bytes of each device sender's pending messages (DeviceGate:Limits:DeviceStoredBytes); the server's are not counted.
    private readonly Dictionary<string, long> _senderBytes = new(StringComparer.Ordinal);
    private readonly SqliteConnection _writer;
    private readonly Task _writerLoop;
    private readonly Dictionary<string, SqliteCommand> _prepared = new(StringComparer.Ordinal);
    private readonly List<(string Key, long Delta, bool Bytes)> _undo = [];
    private readonly HashSet<string> _knownDevices = new(StringComparer.Ordinal);
    private long _pendingTotal;
    private SqliteTransaction? _tx;
    // When a commit last failed because the store could not take it (disk full, I/O error, locked), until one succeeds.
    private long _failingSince;

    private sealed record WriteOp(Func<SqliteConnection, SqliteTransaction, object?>? Work, TaskCompletionSource<object?> Done, StatusRecord? Record = null);

    /// <summary>A delivery step; those of one batch are written with one statement per (status, final).</summary>
    private sealed record StatusRecord(string Device, string Id, string Status, bool Final, DateTimeOffset At);

    public SqliteStore(string dataPath, string synchronous)
    {
        Directory.CreateDirectory(dataPath);
        Path = System.IO.Path.GetFullPath(System.IO.Path.Combine(dataPath, FileName));
        RestrictPermissions(Path);
        // A locked database fails a command after 5 s rather than hanging API calls for the default 30.
        _connectionString = new SqliteConnectionStringBuilder { DataSource = Path, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = true, DefaultTimeout = 5 }.ToString();
        _writer = new SqliteConnection(_connectionString);
        _writer.Open();
        SqliteSchema.Ensure(_writer, Path);
        SqliteSchema.Execute(_writer, $"PRAGMA journal_mode=WAL; PRAGMA synchronous={(synchronous.Equals("Normal", StringComparison.OrdinalIgnoreCase) ? "NORMAL" : "FULL")};");
        // SQLite creates -wal and -shm with the database's mode; an existing folder's older files are tightened too.
        RestrictPermissions(Path);
        using (var cmd = _writer.CreateCommand())
        {
            cmd.CommandText = "SELECT device, count(*) FROM messages WHERE pending = 1 GROUP BY device;";
            using var r = cmd.ExecuteReader();
            while (r.Read()) _pendingCounts[r.GetString(0)] = r.GetInt32(1);
        }
        _pendingTotal = _pendingCounts.Values.Sum();
        foreach (var device in _pendingCounts.Keys) _mayHavePending[device] = 0;
        using (var cmd = _writer.CreateCommand())
        {
            cmd.CommandText = "SELECT sender, sum(length(data)) FROM messages WHERE pending = 1 AND sender <> 'server' GROUP BY sender;";
            using var r = cmd.ExecuteReader();
            while (r.Read()) _senderBytes[r.GetString(0)] = r.GetInt64(1);
        }
        using (var cmd = _writer.CreateCommand())
        {
            cmd.CommandText = "SELECT id FROM devices;";
            using var r = cmd.ExecuteReader();
            while (r.Read()) _knownDevices.Add(r.GetString(0));
        }
        _writerLoop = Task.Factory.StartNew(WriteLoop, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    public string Path { get; }

    /// <summary>Messages, keys and device ids are nobody else's business: the database and its journals are 0600.</summary>
    private static void RestrictPermissions(string path)
    {
        if (OperatingSystem.IsWindows()) return;
        const UnixFileMode owner = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        if (!File.Exists(path)) new FileStream(path, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, UnixCreateMode = owner }).Dispose();
        foreach (var file in new[] { path, path + "-wal", path + "-shm" })
        {
            if (File.Exists(file) && File.GetUnixFileMode(file) != owner) File.SetUnixFileMode(file, owner);
        }
    }

    // ---- group commit -------------------------------------------------------------------------------------------

    private Task<object?> WriteAsync(Func<SqliteConnection, SqliteTransaction, object?> work)
    {
        var op = new WriteOp(work, new TaskCompletionSource<object?>(TaskCreationOptions.RunContinuationsAsynchronously));
        if (!_writes.Writer.TryWrite(op)) op.Done.SetException(new ObjectDisposedException(nameof(SqliteStore)));
        return op.Done.Task;
    }

    private void WriteLoop()
    {
        var batch = new List<WriteOp>(MaxBatch);
        var results = new object?[MaxBatch];
        var reader = _writes.Reader;
        while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            batch.Clear();
            while (batch.Count < MaxBatch && reader.TryRead(out var op)) batch.Add(op);
            _undo.Clear();
            try
            {
                using (_tx = _writer.BeginTransaction())
                {
                    for (var i = 0; i < batch.Count; i++)
                    {
                        if (batch[i].Work is { } work) results[i] = work(_writer, _tx);
                    }
                    FlushRecords(batch);
                    _tx.Commit();
                }
                Volatile.Write(ref _failingSince, 0);
                for (var i = 0; i < batch.Count; i++) batch[i].Done.TrySetResult(results[i]);
            }
            catch (Exception e) when (IsUnavailable(e))
            {
                // The store cannot take writes (locked, disk full, I/O error): every write waiting now would fail the
                // same way after its own busy timeout, so all of them fail at once, bounded by this one attempt.
                UndoCounts();
                Volatile.Write(ref _failingSince, Environment.TickCount64);
                var failure = new StoreUnavailableException(e);
                foreach (var op in batch) op.Done.TrySetException(failure);
                while (reader.TryRead(out var waiting)) waiting.Done.TrySetException(failure);
            }
            catch (Exception)
            {
                // Something in the batch failed: undo it, then run each operation alone so only the bad one fails.
                UndoCounts();
                foreach (var op in batch) RunAlone(op);
            }
            finally
            {
                _tx = null;
            }
        }
    }

    private void RunAlone(WriteOp op)
    {
        _undo.Clear();
        try
        {
            object? result = null;
            using (_tx = _writer.BeginTransaction())
            {
                if (op.Work is { } work) result = work(_writer, _tx);
                else FlushRecords([op]);
                _tx.Commit();
            }
            op.Done.TrySetResult(result);
        }
        catch (SqliteException e) when (e.SqliteErrorCode is 19 /* constraint */ or 1 /* SQL error */)
        {
            UndoCounts();
            op.Done.TrySetException(e);
        }
        catch (Exception e)
        {
            // The commit itself failed (disk full, locked file): nothing of it is durable.
            UndoCounts();
            if (IsUnavailable(e)) Volatile.Write(ref _failingSince, Environment.TickCount64);
            op.Done.TrySetException(new StoreUnavailableException(e));
        }
    }

    /// <summary>Busy, locked, read-only, I/O error, corrupt, full, cannot open: the store, not the operation, is at fault.</summary>
    private static bool IsUnavailable(Exception e) => e is SqliteException { SqliteErrorCode: 5 or 6 or 8 or 10 or 11 or 13 or 14 or 26 };

    /// <summary>For tests: caps the database at <paramref name="pages"/> pages, so writes past it fail with SQLITE_FULL as on a full disk.</summary>
    internal Task LimitSizeAsync(long pages) => WriteAsync((c, tx) =>
    {
        Writer($"PRAGMA max_page_count = {pages};").ExecuteNonQuery();
        return null;
    });

    private void FlushRecords(List<WriteOp> batch)
    {
        List<StatusRecord>? records = null;
        foreach (var op in batch)
        {
            if (op.Record is { } r) (records ??= []).Add(r);
        }
        if (records is null) return;
        foreach (var group in records.GroupBy(r => (r.Status, r.Final)))
        {
            var at = group.Max(r => r.At);
            var ids = "[" + string.Join(",", group.Select(r => JsonSerializer.Serialize(r.Id))) + "]";
            var cmd = Writer($"""
                UPDATE messages SET status = $s, pending = $p, updated_at = $at,
                  attempts = attempts + (CASE WHEN $s = 'sent' THEN 1 ELSE 0 END), {HistoryAppend("$s")}
                WHERE pending = 1 AND id IN (SELECT value FROM json_each($ids)) RETURNING device, sender, length(data);
                """, ("$s", group.Key.Status), ("$p", group.Key.Final ? 0 : 1), ("$at", Ms(at)), ("$iso", Iso(at)), ("$ids", ids));
            using var reader = cmd.ExecuteReader();
            while (reader.Read())
            {
                if (group.Key.Final) Finished(reader);
            }
        }
    }

    private void UndoCounts()
    {
        for (var i = _undo.Count - 1; i >= 0; i--)
        {
            var (key, delta, bytes) = _undo[i];
            if (bytes)
            {
                _senderBytes[key] = _senderBytes.GetValueOrDefault(key) - delta;
                continue;
            }
            _pendingCounts[key] = _pendingCounts.GetValueOrDefault(key) - (int)delta;
            Interlocked.Add(ref _pendingTotal, -delta);
        }
        _undo.Clear();
    }

    private void Adjust(string device, int delta)
    {
        // Before the commit that makes the message readable, so a connect's read that misses it keeps the entry.
        if (delta > 0) _mayHavePending.AddOrUpdate(device, 1, static (_, generation) => generation + 1);
        var before = _pendingCounts.GetValueOrDefault(device);
        var now = Math.Max(0, before + delta);
        _undo.Add((device, now - before, false));
        _pendingCounts[device] = now;
        Interlocked.Add(ref _pendingTotal, now - before);
    }

    private void AdjustBytes(string sender, long delta)
    {
        if (sender == DeviceId.Server) return;
        var before = _senderBytes.GetValueOrDefault(sender);
        var now = Math.Max(0, before + delta);
        _undo.Add((sender, now - before, true));
        if (now == 0) _senderBytes.Remove(sender);
        else _senderBytes[sender] = now;
    }

    /// <summary>A pending message became final; <paramref name="r"/> is at (device, sender, length(data)).</summary>
    private void Finished(SqliteDataReader r, int first = 0)
    {
        CountDown(r.GetString(first));
        AdjustBytes(r.GetString(first + 1), -r.GetInt64(first + 2));
    }

    public long PendingMessages => Interlocked.Read(ref _pendingTotal);

    public async Task<bool> IsWritableAsync()
    {
        // A commit that failed for want of space or I/O makes the node unready until one succeeds (or, with nothing
        // written since, for StoreFailureWindow); the probe below cannot notice a full disk, since it writes nothing.
        var failing = Volatile.Read(ref _failingSince);
        if (failing != 0 && Environment.TickCount64 - failing < Defaults.StoreFailureWindow.TotalMilliseconds) return false;
        try
        {
            var probe = new SqliteConnectionStringBuilder(_connectionString) { DefaultTimeout = 1, Pooling = false }.ToString();
            await using var c = new SqliteConnection(probe);
            await c.OpenAsync().ConfigureAwait(false);
            using var cmd = c.CreateCommand();
            cmd.CommandText = "BEGIN IMMEDIATE; ROLLBACK;";
            await cmd.ExecuteNonQueryAsync().ConfigureAwait(false);
            return true;
        }
        catch (SqliteException)
        {
            return false;
        }
    }

    /// <summary>A prepared statement of the writer connection, kept for reuse (SQLite parses it once).</summary>
    private SqliteCommand Writer(string sql, params (string Name, object? Value)[] args)
    {
        if (!_prepared.TryGetValue(sql, out var cmd))
        {
            cmd = _writer.CreateCommand();
            cmd.CommandText = sql;
            foreach (var (name, _) in args) cmd.Parameters.Add(new SqliteParameter { ParameterName = name });
            _prepared[sql] = cmd;
        }
        cmd.Transaction = _tx;
        for (var i = 0; i < args.Length; i++) cmd.Parameters[i].Value = args[i].Value ?? DBNull.Value;
        return cmd;
    }

    private SqliteConnection OpenReader()
    {
        var c = new SqliteConnection(_connectionString);
        c.Open();
        return c;
    }

    private static SqliteCommand Command(SqliteConnection c, SqliteTransaction? tx, string sql, params (string Name, object? Value)[] args)
    {
        var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        cmd.Transaction = tx;
        foreach (var (name, value) in args) cmd.Parameters.AddWithValue(name, value ?? DBNull.Value);
        return cmd;
    }

    private static byte[] Bytes(ReadOnlyMemory<byte> m) =>
        System.Runtime.InteropServices.MemoryMarshal.TryGetArray(m, out var segment) && segment.Offset == 0 && segment.Count == segment.Array!.Length
            ? segment.Array
            : m.ToArray();

    private static long Ms(DateTimeOffset t) => t.ToUnixTimeMilliseconds();

    /// <summary>raw_binary = 2: the raw form is the string that data (a JSON string) denotes; nothing else is stored for it.</summary>
    private const int RawIsJsonString = 2;
    private static DateTimeOffset FromMs(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms);
    private static string Iso(DateTimeOffset t) => Timestamps.Iso(t);

    /// <summary>
    /// SQL that appends <c>{"status","at"}</c> to the history's JSON array as text (no JSON parsing per update);
    /// <paramref name="statusSql"/> is a literal or a parameter holding a plain status word.
    /// </summary>
    private static string HistoryAppend(string statusSql) =>
        $"history = substr(history, 1, length(history) - 1) || ',{{\"status\":\"' || {statusSql} || '\",\"at\":\"' || $iso || '\"}}]'";


    private void CountDown(string device) => Adjust(device, -1);

    /// <summary>Queued-for devices are known devices; the set saves a statement per message for devices already recorded.</summary>
    private void MarkKnown(string device)
    {
        if (_knownDevices.Contains(device)) return;
        Writer("INSERT INTO devices(id, last_seen) VALUES($d, NULL) ON CONFLICT(id) DO NOTHING;", ("$d", device)).ExecuteNonQuery();
        _knownDevices.Add(device);
    }

    // ---- IMessageStore ------------------------------------------------------------------------------------------

    public async Task<AcceptResult> AcceptAsync(StoredMessage m, string? idempotencyKey, int maxQueuedPerDevice, long maxSenderBytes = long.MaxValue) =>
        (AcceptResult)(await WriteAsync((c, tx) =>
        {
            if (idempotencyKey is not null)
            {
                var find = Writer("SELECT i.message_id, m.status FROM idempotency i LEFT JOIN messages m ON m.id = i.message_id WHERE i.key = $k;", ("$k", idempotencyKey));
                using var r = find.ExecuteReader();
                if (r.Read()) return new AcceptResult(AcceptOutcome.Duplicate, r.GetString(0), r.IsDBNull(1) ? MessageStatus.Expired : r.GetString(1));
            }
            var state = m.StateVersion > 0;
            _pendingCounts.TryGetValue(m.Device, out var queued);
            // A device has at most one state message pending (latest wins), so those are not held to the cap.
            if (!state && queued >= maxQueuedPerDevice) return new AcceptResult(AcceptOutcome.OutboxFull, m.Id, MessageStatus.Queued);
            if (m.From != DeviceId.Server && _senderBytes.GetValueOrDefault(m.From) + m.Data.Bytes.Length > maxSenderBytes)
            {
                return new AcceptResult(AcceptOutcome.QuotaExceeded, m.Id, MessageStatus.Queued);
            }
            if (state && SupersedeStateMessages(m) is { } late)
            {
                return late;
            }
            InsertMessage(m, MessageStatus.Queued, pending: true, StatusChange.FirstHistoryJson(MessageStatus.Queued, m.CreatedAt));
            MarkKnown(m.Device);
            if (idempotencyKey is not null)
            {
                var key = Writer("INSERT INTO idempotency(key, message_id, created_at) VALUES($k, $id, $at);", ("$k", idempotencyKey), ("$id", m.Id), ("$at", Ms(m.CreatedAt)));
                key.ExecuteNonQuery();
            }
            Adjust(m.Device, +1);
            AdjustBytes(m.From, m.Data.Bytes.Length);
            return new AcceptResult(AcceptOutcome.Accepted, m.Id, MessageStatus.Queued);
        }).ConfigureAwait(false))!;

    /// <summary>Writes the message's row with its first status (<c>queued</c> and pending, or already final) and history.</summary>
    private void InsertMessage(StoredMessage m, string status, bool pending, string history) => Writer("""
        INSERT INTO messages(id, device, sender, grp, kind, data, raw, raw_binary, created_at, expires_at, updated_at, status, pending, attempts, history, state_version)
        VALUES($id, $device, $sender, $grp, $kind, $data, NULL, $rawBinary, $created, $expires, $created, $status, $pending, 0, $history, $sv);
        """,
        ("$id", m.Id), ("$device", m.Device), ("$sender", m.From), ("$grp", m.Group), ("$kind", (int)m.Data.Kind), ("$data", Bytes(m.Data.Bytes)),
        ("$rawBinary", m.Data.RawType == System.Net.WebSockets.WebSocketMessageType.Binary ? 1 : m.Data.RawIsJsonString ? RawIsJsonString : 0),
        ("$created", Ms(m.CreatedAt)), ("$expires", Ms(m.ExpiresAt)), ("$status", status), ("$pending", pending ? 1 : 0), ("$history", history),
        ("$sv", m.StateVersion)).ExecuteNonQuery();

    /// <summary>
    /// Latest wins: the device's pending state messages older than <paramref name="m"/> become superseded. When one as
    /// new is pending already, or the device acked that version, <paramref name="m"/> itself is stored superseded and
    /// that result returned; otherwise null (insert it).
    /// </summary>
    private AcceptResult? SupersedeStateMessages(StoredMessage m)
    {
        long newest, acked;
        using (var r = Writer("""
            SELECT coalesce((SELECT max(state_version) FROM messages WHERE device = $d AND pending = 1 AND state_version > 0), 0),
                   coalesce((SELECT acked_version FROM device_state WHERE device = $d), 0);
            """, ("$d", m.Device)).ExecuteReader())
        {
            r.Read();
            newest = r.GetInt64(0);
            acked = r.GetInt64(1);
        }
        if (newest >= m.StateVersion || acked >= m.StateVersion)
        {
            var history = StatusChange.FirstHistoryJson(MessageStatus.Queued, m.CreatedAt)[..^1] + "," + StatusChange.FirstHistoryJson(MessageStatus.Superseded, m.CreatedAt)[1..];
            InsertMessage(m, MessageStatus.Superseded, pending: false, history);
            return new AcceptResult(AcceptOutcome.Superseded, m.Id, MessageStatus.Superseded);
        }
        var at = m.CreatedAt;
        using var superseded = Writer($"""
            UPDATE messages SET status = 'superseded', pending = 0, updated_at = $at, {HistoryAppend("'superseded'")}
            WHERE device = $d AND pending = 1 AND state_version > 0 RETURNING device, sender, length(data);
            """, ("$d", m.Device), ("$at", Ms(at)), ("$iso", Iso(at))).ExecuteReader();
        while (superseded.Read()) Finished(superseded);
        return null;
    }

    public async Task<IReadOnlyList<StoredMessage>> LoadPendingAsync(string device, DateTimeOffset now)
    {
        try
        {
            return await LoadPendingCoreAsync(device, now).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SqliteException or InvalidOperationException)
        {
            // A backlog that cannot be read (locked, corrupt, closed): the caller treats the store as unavailable.
            throw new StoreUnavailableException(e);
        }
    }

    private async Task<IReadOnlyList<StoredMessage>> LoadPendingCoreAsync(string device, DateTimeOffset now)
    {
        if (!_mayHavePending.TryGetValue(device, out var generation)) return [];
        await using var c = OpenReader();
        using var cmd = Command(c, null, """
            SELECT id, sender, grp, kind, data, raw, raw_binary, created_at, expires_at, attempts, state_version
            FROM messages WHERE device = $d AND pending = 1 AND expires_at > $now ORDER BY seq;
            """, ("$d", device), ("$now", Ms(now)));
        using var r = await cmd.ExecuteReaderAsync().ConfigureAwait(false);
        var list = new List<StoredMessage>();
        while (await r.ReadAsync().ConfigureAwait(false))
        {
            // raw: only rows written before version 2 kept a second copy of a JSON string's payload.
            var form = r.GetInt32(6);
            list.Add(new StoredMessage(r.GetString(0), device, r.GetString(1), r.IsDBNull(2) ? null : r.GetString(2),
                MessageData.Restore((DataKind)r.GetInt32(3), (byte[])r[4], form == 1, form == RawIsJsonString, r.IsDBNull(5) ? null : (byte[])r[5]),
                FromMs(r.GetInt64(7)), FromMs(r.GetInt64(8)), r.GetInt32(9), r.GetInt64(10)));
        }
        // Nothing pending, and nothing queued for it since the generation read above: the next connect reads nothing.
        if (list.Count == 0) _mayHavePending.TryRemove(new KeyValuePair<string, long>(device, generation));
        return list;
    }

    public Task RecordAsync(string device, string id, string status, bool final, DateTimeOffset at)
    {
        var op = new WriteOp(null, new TaskCompletionSource<object?>(TaskCreationOptions.RunContinuationsAsynchronously), new StatusRecord(device, id, status, final, at));
        if (!_writes.Writer.TryWrite(op)) op.Done.SetException(new ObjectDisposedException(nameof(SqliteStore)));
        return op.Done.Task;
    }

    public async Task<MessageRecord?> GetAsync(string id)
    {
        await using var c = OpenReader();
        using var cmd = Command(c, null, "SELECT device, status, created_at, updated_at, attempts, history FROM messages WHERE id = $id;", ("$id", id));
        using var r = await cmd.ExecuteReaderAsync().ConfigureAwait(false);
        if (!await r.ReadAsync().ConfigureAwait(false)) return null;
        return new MessageRecord(id, r.GetString(0), r.GetString(1), FromMs(r.GetInt64(2)), FromMs(r.GetInt64(3)), r.GetInt32(4), StatusChange.ParseHistory(r.GetString(5)));
    }

    public async Task<CancelOutcome> CancelAsync(string id, DateTimeOffset at) => (CancelOutcome)(await WriteAsync((c, tx) =>
    {
        var find = Writer("SELECT status, device, sender, length(data) FROM messages WHERE id = $id;", ("$id", id));
        string status, device, sender;
        long bytes;
        using (var r = find.ExecuteReader())
        {
            if (!r.Read()) return CancelOutcome.NotFound;
            status = r.GetString(0);
            device = r.GetString(1);
            sender = r.GetString(2);
            bytes = r.GetInt64(3);
        }
        if (status != MessageStatus.Queued) return CancelOutcome.AlreadySent;
        var update = Writer($"UPDATE messages SET status = 'cancelled', pending = 0, updated_at = $at, {HistoryAppend("'cancelled'")} WHERE id = $id;",
            ("$at", Ms(at)), ("$iso", Iso(at)), ("$id", id));
        update.ExecuteNonQuery();
        CountDown(device);
        AdjustBytes(sender, -bytes);
        return CancelOutcome.Cancelled;
    }).ConfigureAwait(false))!;

    public async Task<IReadOnlyList<(string Id, string Device)>> ExpireDueAsync(DateTimeOffset now) =>
        (IReadOnlyList<(string, string)>)(await WriteAsync((c, tx) =>
        {
            var cmd = Writer($"UPDATE messages SET status = 'expired', pending = 0, updated_at = $now, {HistoryAppend("'expired'")} WHERE pending = 1 AND expires_at <= $now RETURNING id, device, sender, length(data);",
                ("$now", Ms(now)), ("$iso", Iso(now)));
            var expired = new List<(string, string)>();
            using var r = cmd.ExecuteReader();
            while (r.Read())
            {
                expired.Add((r.GetString(0), r.GetString(1)));
                Finished(r, first: 1);
            }
            return expired;
        }).ConfigureAwait(false))!;

    public Task PurgeAsync(DateTimeOffset before) => WriteAsync((c, tx) =>
    {
        var cmd = Writer("DELETE FROM messages WHERE pending = 0 AND updated_at < $b; DELETE FROM idempotency WHERE created_at < $b; DELETE FROM sessions WHERE until < $b;", ("$b", Ms(before)));
        cmd.ExecuteNonQuery();
        return null;
    });

    public async Task<IReadOnlyList<MessageRecord>> RecentAsync(string device, int limit)
    {
        await using var c = OpenReader();
        using var cmd = Command(c, null, "SELECT id, status, created_at, updated_at, attempts, history FROM messages WHERE device = $d ORDER BY seq DESC LIMIT $n;",
            ("$d", device), ("$n", limit));
        using var r = await cmd.ExecuteReaderAsync().ConfigureAwait(false);
        var list = new List<MessageRecord>();
        while (await r.ReadAsync().ConfigureAwait(false))
        {
            list.Add(new MessageRecord(r.GetString(0), device, r.GetString(1), FromMs(r.GetInt64(2)), FromMs(r.GetInt64(3)), r.GetInt32(4), StatusChange.ParseHistory(r.GetString(5))));
        }
        return list;
    }


    // ---- IDirectoryStore ----------------------------------------------------------------------------------------

    public async Task<DirectorySnapshot> LoadAsync()
    {
        await using var c = OpenReader();
        var devices = new Dictionary<string, DateTimeOffset?>(StringComparer.Ordinal);
        var notBefore = new Dictionary<string, DateTimeOffset>(StringComparer.Ordinal);
        using (var cmd = Command(c, null, "SELECT id, last_seen FROM devices;"))
        using (var r = await cmd.ExecuteReaderAsync().ConfigureAwait(false))
        {
            while (await r.ReadAsync().ConfigureAwait(false)) devices[r.GetString(0)] = r.IsDBNull(1) ? null : FromMs(r.GetInt64(1));
        }
        using (var cmd = Command(c, null, "SELECT device, not_before FROM revocations;"))
        using (var r = await cmd.ExecuteReaderAsync().ConfigureAwait(false))
        {
            while (await r.ReadAsync().ConfigureAwait(false)) notBefore[r.GetString(0)] = FromMs(r.GetInt64(1));
        }
        var memberships = new List<(string, string)>();
        using (var cmd = Command(c, null, "SELECT grp, device FROM memberships;"))
        using (var r = await cmd.ExecuteReaderAsync().ConfigureAwait(false))
        {
            while (await r.ReadAsync().ConfigureAwait(false)) memberships.Add((r.GetString(0), r.GetString(1)));
        }
        var tags = new Dictionary<string, IReadOnlyDictionary<string, string>>(StringComparer.Ordinal);
        using (var cmd = Command(c, null, "SELECT device, key, value FROM tags ORDER BY device;"))
        using (var r = await cmd.ExecuteReaderAsync().ConfigureAwait(false))
        {
            while (await r.ReadAsync().ConfigureAwait(false))
            {
                var device = r.GetString(0);
                if (!tags.TryGetValue(device, out var set)) tags[device] = set = new Dictionary<string, string>(StringComparer.Ordinal);
                ((Dictionary<string, string>)set)[r.GetString(1)] = r.GetString(2);
            }
        }
        var sessions = new Dictionary<string, RememberedSession>(StringComparer.Ordinal);
        using (var cmd = Command(c, null, "SELECT device, owner, subscriptions, until FROM sessions WHERE until > $now;", ("$now", Ms(DateTimeOffset.UtcNow))))
        using (var r = await cmd.ExecuteReaderAsync().ConfigureAwait(false))
        {
            while (await r.ReadAsync().ConfigureAwait(false)) sessions[r.GetString(0)] = new RememberedSession(r.GetString(1), r.GetString(2), FromMs(r.GetInt64(3)));
        }
        return new DirectorySnapshot(devices, memberships, notBefore, tags, sessions);
    }

    public Task SaveLastSeenAsync(string device, DateTimeOffset at) => WriteAsync((c, tx) =>
    {
        var cmd = Writer("INSERT INTO devices(id, last_seen) VALUES($d, $at) ON CONFLICT(id) DO UPDATE SET last_seen = excluded.last_seen;", ("$d", device), ("$at", Ms(at)));
        cmd.ExecuteNonQuery();
        _knownDevices.Add(device);
        return null;
    });

    public async Task<bool> SetMembershipAsync(string group, string device, bool member, int maxGroups = int.MaxValue) => (bool)(await WriteAsync((c, tx) =>
    {
        if (!member)
        {
            Writer("DELETE FROM memberships WHERE grp = $g AND device = $d;", ("$g", group), ("$d", device)).ExecuteNonQuery();
            return true;
        }
        var count = Writer("SELECT count(*), coalesce(sum(grp = $g), 0) FROM memberships WHERE device = $d;", ("$g", group), ("$d", device));
        using (var r = count.ExecuteReader())
        {
            r.Read();
            if (r.GetInt64(1) > 0) return true;
            if (r.GetInt64(0) >= maxGroups) return false;
        }
        Writer("INSERT INTO memberships(grp, device) VALUES($g, $d) ON CONFLICT DO NOTHING;", ("$g", group), ("$d", device)).ExecuteNonQuery();
        MarkKnown(device);
        return true;
    }).ConfigureAwait(false))!;

    public Task RevokeTokensAsync(string device, DateTimeOffset at) => WriteAsync((c, tx) =>
    {
        Writer("INSERT INTO revocations(device, not_before) VALUES($d, $at) ON CONFLICT(device) DO UPDATE SET not_before = excluded.not_before;",
            ("$d", device), ("$at", Ms(at))).ExecuteNonQuery();
        MarkKnown(device);
        return null;
    });

    public Task SetTagsAsync(string device, IReadOnlyDictionary<string, string> tags) => WriteAsync((c, tx) =>
    {
        Writer("DELETE FROM tags WHERE device = $d;", ("$d", device)).ExecuteNonQuery();
        foreach (var (key, value) in tags)
        {
            Writer("INSERT INTO tags(device, key, value) VALUES($d, $k, $v);", ("$d", device), ("$k", key), ("$v", value)).ExecuteNonQuery();
        }
        MarkKnown(device);
        return null;
    });

    public Task PutSessionAsync(string device, RememberedSession session, bool take) => WriteAsync((c, tx) =>
    {
        Writer(take
                ? "INSERT INTO sessions(device, owner, subscriptions, until) VALUES($d, $o, $s, $u) ON CONFLICT(device) DO UPDATE SET owner = excluded.owner, subscriptions = excluded.subscriptions, until = excluded.until;"
                : "UPDATE sessions SET subscriptions = $s, until = $u WHERE device = $d AND owner = $o;",
            ("$d", device), ("$o", session.Owner), ("$s", session.Subscriptions), ("$u", Ms(session.Until))).ExecuteNonQuery();
        return null;
    });

    public Task DeleteSessionAsync(string device) => WriteAsync((c, tx) =>
    {
        Writer("DELETE FROM sessions WHERE device = $d;", ("$d", device)).ExecuteNonQuery();
        return null;
    });

    public Task ForgetDeviceAsync(string device) => WriteAsync((c, tx) =>
    {
        var now = DateTimeOffset.UtcNow;
        Writer("DELETE FROM memberships WHERE device = $d; DELETE FROM devices WHERE id = $d; DELETE FROM device_state WHERE device = $d; DELETE FROM tags WHERE device = $d; DELETE FROM sessions WHERE device = $d;",
            ("$d", device)).ExecuteNonQuery();
        var cancel = Writer($"""
            UPDATE messages SET status = 'cancelled', pending = 0, updated_at = $now, {HistoryAppend("'cancelled'")} WHERE device = $d AND pending = 1
            RETURNING device, sender, length(data);
            """, ("$d", device), ("$now", Ms(now)), ("$iso", Iso(now)));
        using (var r = cancel.ExecuteReader())
        {
            while (r.Read()) Finished(r);
        }
        _knownDevices.Remove(device);
        return null;
    });

    public async Task<int> CountQueuedAsync(string device, DateTimeOffset now)
    {
        await using var c = OpenReader();
        using var cmd = Command(c, null, "SELECT count(*) FROM messages WHERE device = $d AND pending = 1 AND expires_at > $now;", ("$d", device), ("$now", Ms(now)));
        return Convert.ToInt32(await cmd.ExecuteScalarAsync().ConfigureAwait(false), CultureInfo.InvariantCulture);
    }

    // ---- IStateStore ---------------------------------------------------------------------------------------------

    public async Task<StateRecord> GetStateAsync(string device)
    {
        await using var c = OpenReader();
        using var cmd = Command(c, null, SelectState, ("$d", device));
        using var r = await cmd.ExecuteReaderAsync().ConfigureAwait(false);
        return await r.ReadAsync().ConfigureAwait(false) ? ReadState(r) : StateRecord.Empty;
    }

    private const string SelectState = "SELECT desired, reported, desired_version, reported_version, acked_version, desired_at, reported_at FROM device_state WHERE device = $d;";

    private static StateRecord ReadState(SqliteDataReader r) => new(r.GetString(0), r.GetString(1), r.GetInt64(2), r.GetInt64(3), r.GetInt64(4),
        r.IsDBNull(5) ? null : FromMs(r.GetInt64(5)), r.IsDBNull(6) ? null : FromMs(r.GetInt64(6)));

    public async Task<StateWrite> UpdateStateAsync(string device, StatePart part, Func<string, StateEdit> edit, long? ifMatch, DateTimeOffset at) =>
        (StateWrite)(await WriteAsync((c, tx) =>
        {
            // In the writer: the read, the edit and the write are one step, so versions are assigned atomically.
            StateRecord current;
            using (var r = Writer(SelectState, ("$d", device)).ExecuteReader())
            {
                current = r.Read() ? ReadState(r) : StateRecord.Empty;
            }
            var write = current.Apply(part, edit, ifMatch, at);
            if (write.Outcome != StateWriteOutcome.Written) return write;
            var next = write.Record;
            Writer("""
                INSERT INTO device_state(device, desired, reported, desired_version, reported_version, acked_version, desired_at, reported_at)
                VALUES($d, $des, $rep, $dv, $rv, $av, $dat, $rat)
                ON CONFLICT(device) DO UPDATE SET desired = excluded.desired, reported = excluded.reported, desired_version = excluded.desired_version,
                  reported_version = excluded.reported_version, desired_at = excluded.desired_at, reported_at = excluded.reported_at;
                """, ("$d", device), ("$des", next.Desired), ("$rep", next.Reported), ("$dv", next.DesiredVersion), ("$rv", next.ReportedVersion),
                ("$av", next.AckedVersion), ("$dat", next.DesiredAt is { } d ? Ms(d) : null), ("$rat", next.ReportedAt is { } rt ? Ms(rt) : null)).ExecuteNonQuery();
            return write;
        }).ConfigureAwait(false))!;

    public Task AckStateAsync(string device, long version) => WriteAsync((c, tx) =>
    {
        Writer("UPDATE device_state SET acked_version = max(acked_version, $v) WHERE device = $d;", ("$d", device), ("$v", version)).ExecuteNonQuery();
        return null;
    });

    public async ValueTask DisposeAsync()
    {
        _writes.Writer.TryComplete();
        await _writerLoop.ConfigureAwait(false);
        await _writer.DisposeAsync().ConfigureAwait(false);
        SqliteConnection.ClearPool(new SqliteConnection(_connectionString));
    }
}

/// <summary>The store could not make a write durable; the API answers 503 and nothing was acknowledged.</summary>
public sealed class StoreUnavailableException(Exception inner) : Exception("The message store cannot take writes right now.", inner)
{
    /// <summary>Why, as the <c>cause</c> label of devicegate_store_unavailable_total.</summary>
    public string Cause => CauseOf(InnerException!);

    /// <summary>The write happened on the primary but was not confirmed by DeviceGate:Redis:MinReplicas replicas in time: it may survive.</summary>
    public bool MayHaveSurvived => InnerException is ReplicationTimeoutException;

    public static string CauseOf(Exception e) => e switch
    {
        StoreUnavailableException s => s.Cause,
        ReplicationTimeoutException => "replication",
        // A command the client abandoned when its connection went (StoreFailures): the connection's failure.
        StackExchange.Redis.RedisConnectionException or TaskCanceledException => "redis_connection",
        StackExchange.Redis.RedisTimeoutException or TimeoutException => "redis_timeout",
        StackExchange.Redis.RedisServerException r when r.Message.StartsWith("READONLY", StringComparison.Ordinal) => "redis_readonly",
        // A Redis Cluster shard failing over: refused by the cluster, or by the client before sending to a demoted primary.
        StackExchange.Redis.RedisServerException r when r.Message.StartsWith("CLUSTERDOWN", StringComparison.Ordinal) || r.Message.StartsWith("TRYAGAIN", StringComparison.Ordinal)
            || r.Message.StartsWith("MASTERDOWN", StringComparison.Ordinal) => "redis_cluster",
        StackExchange.Redis.RedisCommandException => "redis_cluster",
        StackExchange.Redis.RedisException => "redis",
        Microsoft.Data.Sqlite.SqliteException or IOException => "disk",
        _ => "store",
    };
}

/// <summary>Redis's WAIT did not confirm DeviceGate:Redis:MinReplicas replicas within DeviceGate:Redis:ReplicationTimeout.</summary>
public sealed class ReplicationTimeoutException(int wanted, TimeSpan timeout)
    : TimeoutException($"the write was not confirmed by {wanted} replica(s) within {timeout.TotalMilliseconds:0} ms");
