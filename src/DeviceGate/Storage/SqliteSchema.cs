using Microsoft.Data.Sqlite;

namespace DeviceGate.Storage;

/// <summary>Creates the database, or proves an existing file is ours and whole. Never deletes anything.</summary>
internal static class SqliteSchema
{
    /// <summary>'DGAT': marks the file as a DeviceGate database (PRAGMA application_id).</summary>
    public const int ApplicationId = 0x44474154;
    public const int Version = 4;

    // seq is the rowid: new rows always get max+1, which is all acceptance order needs (no AUTOINCREMENT
    // bookkeeping per insert). Final rows have no index of their own: the once-a-minute purge scans, which is
    // cheaper than maintaining an index on every delivery.
    private const string Create = """
        CREATE TABLE messages(
          seq INTEGER PRIMARY KEY,
          id TEXT NOT NULL UNIQUE,
          device TEXT NOT NULL,
          sender TEXT NOT NULL,
          grp TEXT,
          kind INTEGER NOT NULL,
          data BLOB NOT NULL,
          raw BLOB,
          raw_binary INTEGER NOT NULL,
          created_at INTEGER NOT NULL,
          expires_at INTEGER NOT NULL,
          updated_at INTEGER NOT NULL,
          status TEXT NOT NULL,
          pending INTEGER NOT NULL,
          attempts INTEGER NOT NULL DEFAULT 0,
          history TEXT NOT NULL,
          state_version INTEGER NOT NULL DEFAULT 0);
        CREATE INDEX messages_pending ON messages(device, seq) WHERE pending = 1;
        CREATE INDEX messages_expiry ON messages(expires_at) WHERE pending = 1;
        CREATE TABLE idempotency(key TEXT PRIMARY KEY, message_id TEXT NOT NULL, created_at INTEGER NOT NULL);
        CREATE INDEX idempotency_age ON idempotency(created_at);
        CREATE TABLE devices(id TEXT PRIMARY KEY, last_seen INTEGER);
        CREATE TABLE memberships(grp TEXT NOT NULL, device TEXT NOT NULL, PRIMARY KEY(grp, device));
        CREATE INDEX memberships_device ON memberships(device);
        CREATE TABLE revocations(device TEXT PRIMARY KEY, not_before INTEGER NOT NULL);
        CREATE TABLE device_state(device TEXT PRIMARY KEY, desired TEXT NOT NULL, reported TEXT NOT NULL,
          desired_version INTEGER NOT NULL, reported_version INTEGER NOT NULL, acked_version INTEGER NOT NULL,
          desired_at INTEGER, reported_at INTEGER);
        CREATE TABLE tags(device TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(device, key));
        CREATE TABLE sessions(device TEXT PRIMARY KEY, owner TEXT NOT NULL, subscriptions TEXT NOT NULL, until INTEGER NOT NULL);
        """;

    // Version 1 kept a device's revocation in its devices row, so forgetting the device dropped it.
    private const string MigrateFrom1 = """
        CREATE TABLE revocations(device TEXT PRIMARY KEY, not_before INTEGER NOT NULL);
        INSERT INTO revocations(device, not_before) SELECT id, tokens_not_before FROM devices WHERE tokens_not_before IS NOT NULL;
        ALTER TABLE devices DROP COLUMN tokens_not_before;
        CREATE TABLE device_state(device TEXT PRIMARY KEY, desired TEXT NOT NULL, reported TEXT NOT NULL,
          desired_version INTEGER NOT NULL, reported_version INTEGER NOT NULL, acked_version INTEGER NOT NULL,
          desired_at INTEGER, reported_at INTEGER);
        """;

    // Version 2 had no desired-state messages and no tags.
    private const string MigrateFrom2 = """
        ALTER TABLE messages ADD COLUMN state_version INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE tags(device TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(device, key));
        """;

    // Version 3 kept no MQTT sessions.
    private const string MigrateFrom3 = """
        CREATE TABLE sessions(device TEXT PRIMARY KEY, owner TEXT NOT NULL, subscriptions TEXT NOT NULL, until INTEGER NOT NULL);
        """;

    /// <summary>Opens (creating if absent) and checks the database; throws a clear InvalidOperationException otherwise.</summary>
    public static void Ensure(SqliteConnection connection, string path)
    {
        try
        {
            var appId = Convert.ToInt32(Scalar(connection, "PRAGMA application_id;"), System.Globalization.CultureInfo.InvariantCulture);
            var version = Convert.ToInt32(Scalar(connection, "PRAGMA user_version;"), System.Globalization.CultureInfo.InvariantCulture);
            var tables = Convert.ToInt32(Scalar(connection, "SELECT count(*) FROM sqlite_master;"), System.Globalization.CultureInfo.InvariantCulture);
            if (appId == 0 && tables == 0)
            {
                Execute(connection, "PRAGMA journal_mode=WAL;");
                using var tx = connection.BeginTransaction();
                Execute(connection, Create, tx);
                Execute(connection, $"PRAGMA application_id = {ApplicationId}; PRAGMA user_version = {Version};", tx);
                tx.Commit();
                return;
            }
            if (appId != ApplicationId)
            {
                throw new InvalidOperationException($"{path} is a SQLite database of another application (application_id {appId}); refusing to use it. Point DeviceGate:Store:Path at another folder.");
            }
            if (version is 1 or 2 or 3)
            {
                // One transaction: a migration that fails leaves the file as it was.
                using var tx = connection.BeginTransaction();
                if (version == 1) Execute(connection, MigrateFrom1, tx);
                if (version <= 2) Execute(connection, MigrateFrom2, tx);
                Execute(connection, MigrateFrom3, tx);
                Execute(connection, $"PRAGMA user_version = {Version};", tx);
                tx.Commit();
                version = Version;
            }
            if (version != Version)
            {
                throw new InvalidOperationException($"{path} has schema version {version}; this DeviceGate knows version {Version}. Refusing to start rather than guess.");
            }
            var check = Scalar(connection, "PRAGMA quick_check;") as string;
            if (check != "ok") throw new InvalidOperationException($"{path} failed SQLite's integrity check ({check}); refusing to start. Restore it from a backup; nothing was deleted.");
        }
        catch (SqliteException e)
        {
            throw new InvalidOperationException($"{path} is not a usable DeviceGate database ({e.Message.TrimEnd('.')}); refusing to start. Nothing was deleted.", e);
        }
    }

    public static object? Scalar(SqliteConnection connection, string sql, SqliteTransaction? tx = null)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = tx;
        return command.ExecuteScalar();
    }

    public static void Execute(SqliteConnection connection, string sql, SqliteTransaction? tx = null)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.Transaction = tx;
        command.ExecuteNonQuery();
    }
}
