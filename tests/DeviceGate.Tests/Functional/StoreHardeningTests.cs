using System.Diagnostics;
using System.Net;
using System.Net.WebSockets;
using DeviceGate.Storage;
using DeviceGate.Tests.Infrastructure;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;

namespace DeviceGate.Tests.Functional;

/// <summary>The embedded store against what a hostile caller or a sick disk does (issue 13).</summary>
public sealed class StoreHardeningTests : GatewayTest
{
    private async Task<HttpResponseMessage> SendAsync(string device, string text, string? key = null, string query = "")
    {
        var request = new HttpRequestMessage(HttpMethod.Post, $"api/devices/{device}/messages{query}") { Content = new StringContent(text) };
        if (key is not null) request.Headers.Add("Idempotency-Key", key);
        return await Gw.Api.SendAsync(request);
    }

    private static async Task<int> HandshakeStatusAsync(TestGateway gw, string device, string token)
    {
        using var socket = new ClientWebSocket();
        socket.Options.CollectHttpResponseDetails = true;
        socket.Options.SetRequestHeader("Authorization", "Bearer " + token);
        try
        {
            await socket.ConnectAsync(gw.WsUri($"ws?deviceId={device}"), new CancellationTokenSource(Timeouts.Default).Token);
            return (int)socket.HttpStatusCode;
        }
        catch (WebSocketException)
        {
            return (int)socket.HttpStatusCode;
        }
    }

    [Fact]
    public async Task Forgetting_a_device_keeps_its_token_revocation_across_restarts()
    {
        var dir = TempFolder.Create();
        try
        {
            string stolen;
            await using (var gw = await TestGateway.StartAsync(dataPath: dir))
            {
                stolen = gw.Token("stolen");
                Assert.Equal(HttpStatusCode.NoContent, (await gw.Api.PostAsync("api/devices/stolen/revoke-tokens", null)).StatusCode);
                Assert.Equal(HttpStatusCode.NoContent, (await gw.Api.DeleteAsync("api/devices/stolen")).StatusCode);
                Assert.Equal(401, await HandshakeStatusAsync(gw, "stolen", stolen));
                Assert.Equal(HttpStatusCode.NotFound, (await gw.Api.GetAsync("api/devices/stolen")).StatusCode);
            }
            await using var again = await TestGateway.StartAsync(dataPath: dir);
            Assert.Equal(401, await HandshakeStatusAsync(again, "stolen", stolen));
            Assert.Equal(101, await HandshakeStatusAsync(again, "stolen", again.Token("stolen")));
        }
        finally
        {
            TempFolder.Delete(dir);
        }
    }

    [Fact]
    public async Task An_idempotency_key_names_a_send_to_one_device()
    {
        using var a = await Gw.ConnectAsync("idem-a");
        using var b = await Gw.ConnectAsync("idem-b");
        foreach (var query in new[] { "", "?ttl=60" })
        {
            var key = "job-1" + query;
            using var toA = await SendAsync("idem-a", "for a" + query, key, query);
            using var toB = await SendAsync("idem-b", "for b" + query, key, query);
            Assert.Equal(HttpStatusCode.Accepted, toB.StatusCode);
            var idA = (await toA.JsonAsync()).Str("id");
            Assert.NotEqual(idA, (await toB.JsonAsync()).Str("id"));
            Assert.Equal("for a" + query, await a.ReceiveTextAsync());
            Assert.Equal("for b" + query, await b.ReceiveTextAsync());
            // The same key for the same device is still the same message.
            using var retry = await SendAsync("idem-a", "for a" + query, key, query);
            Assert.Equal(idA, (await retry.JsonAsync()).Str("id"));
        }
    }

    [Fact]
    public async Task A_refused_send_leaves_its_idempotency_key_free()
    {
        using (var offline = await SendAsync("idem-late", "hello", "k-late"))
        {
            Assert.Equal(HttpStatusCode.NotFound, offline.StatusCode);
        }
        using var device = await Gw.ConnectAsync("idem-late");
        using var retry = await SendAsync("idem-late", "hello", "k-late");
        Assert.Equal(HttpStatusCode.Accepted, retry.StatusCode);
        Assert.Equal("sent", (await retry.JsonAsync()).Str("status"));
        Assert.Equal("hello", await device.ReceiveTextAsync());
    }

    [Fact]
    public async Task A_locked_database_fails_every_waiting_durable_send_within_one_busy_timeout()
    {
        var db = Path.Combine(Gw.DataPath, SqliteStore.FileName);
        using var holder = new SqliteConnection($"Data Source={db};Pooling=False");
        holder.Open();
        using (var begin = holder.CreateCommand())
        {
            begin.CommandText = "BEGIN EXCLUSIVE;";
            begin.ExecuteNonQuery();
        }
        var clock = Stopwatch.StartNew();
        var sends = Enumerable.Range(0, 20).Select(i => SendAsync("locked-out", $"m{i}", query: "?ttl=60")).ToArray();
        var responses = await Task.WhenAll(sends);
        var took = clock.Elapsed;
        Assert.All(responses, r => Assert.Equal(HttpStatusCode.ServiceUnavailable, r.StatusCode));
        Assert.All(responses, r => Assert.NotNull(r.Headers.RetryAfter));
        // Each waited for one or two failing commits of 5 s (the one in progress when it queued, then its own), not 20 in turn.
        Assert.True(took < TimeSpan.FromSeconds(16), $"took {took}");
        foreach (var r in responses) r.Dispose();
        using (var rollback = holder.CreateCommand())
        {
            rollback.CommandText = "ROLLBACK;";
            rollback.ExecuteNonQuery();
        }
        using var after = await SendAsync("locked-out", "after", query: "?ttl=60");
        Assert.Equal(HttpStatusCode.Accepted, after.StatusCode);
    }

    [Fact]
    public async Task Readiness_turns_503_while_commits_fail_for_want_of_space()
    {
        using var anonymous = new HttpClient { BaseAddress = Gw.BaseUri };
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("readyz")).StatusCode);
        var store = Gw.App.Services.GetRequiredService<SqliteStore>();
        long pages;
        await using (var db = new SqliteConnection($"Data Source={store.Path};Mode=ReadOnly"))
        {
            await db.OpenAsync();
            using var cmd = db.CreateCommand();
            cmd.CommandText = "PRAGMA page_count;";
            pages = (long)(await cmd.ExecuteScalarAsync())!;
        }
        // The database may not grow: a write that needs a page fails with SQLITE_FULL, as on a full disk.
        await store.LimitSizeAsync(pages);
        using (var full = await SendAsync("disk-full", new string('z', 60_000), query: "?ttl=60"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, full.StatusCode);
            Assert.Equal("store_unavailable", (await full.JsonAsync()).Str("type"));
        }
        using (var notReady = await anonymous.GetAsync("readyz"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, notReady.StatusCode);
            Assert.Contains("store_unavailable", await notReady.Content.ReadAsStringAsync());
        }
        await store.LimitSizeAsync(1_000_000);
        using (var fine = await SendAsync("disk-full", "small again", query: "?ttl=60")) Assert.Equal(HttpStatusCode.Accepted, fine.StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("readyz")).StatusCode);
    }

    [Fact]
    public async Task The_database_and_its_journals_are_private_even_in_a_loose_folder()
    {
        if (OperatingSystem.IsWindows()) return;
        const UnixFileMode owner = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        var dir = TempFolder.Create();
        try
        {
            var db = Path.Combine(dir, SqliteStore.FileName);
            await using (var gw = await TestGateway.StartAsync(dataPath: dir))
            {
                using var r = await gw.Api.PostTextAsync("api/devices/p/messages?ttl=60", "x");
                foreach (var f in new[] { db, db + "-wal", db + "-shm" }) Assert.Equal(owner, File.GetUnixFileMode(f));
            }
            foreach (var f in new[] { db, db + "-wal", db + "-shm" })
            {
                if (File.Exists(f)) File.SetUnixFileMode(f, owner | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            }
            await using (var again = await TestGateway.StartAsync(dataPath: dir))
            {
                foreach (var f in new[] { db, db + "-wal", db + "-shm" }.Where(File.Exists)) Assert.Equal(owner, File.GetUnixFileMode(f));
            }
        }
        finally
        {
            TempFolder.Delete(dir);
        }
    }

    [Fact]
    public async Task A_version_1_database_is_migrated_and_keeps_its_revocations()
    {
        var dir = TempFolder.Create();
        try
        {
            var path = Path.Combine(dir, SqliteStore.FileName);
            await using (var v1 = new SqliteConnection($"Data Source={path};Pooling=False"))
            {
                await v1.OpenAsync();
                using var cmd = v1.CreateCommand();
                cmd.CommandText = $"""
                    CREATE TABLE messages(seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, device TEXT NOT NULL, sender TEXT NOT NULL, grp TEXT,
                      kind INTEGER NOT NULL, data BLOB NOT NULL, raw BLOB, raw_binary INTEGER NOT NULL, created_at INTEGER NOT NULL,
                      expires_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, status TEXT NOT NULL, pending INTEGER NOT NULL,
                      attempts INTEGER NOT NULL DEFAULT 0, history TEXT NOT NULL);
                    CREATE INDEX messages_pending ON messages(device, seq) WHERE pending = 1;
                    CREATE INDEX messages_expiry ON messages(expires_at) WHERE pending = 1;
                    CREATE TABLE idempotency(key TEXT PRIMARY KEY, message_id TEXT NOT NULL, created_at INTEGER NOT NULL);
                    CREATE INDEX idempotency_age ON idempotency(created_at);
                    CREATE TABLE devices(id TEXT PRIMARY KEY, last_seen INTEGER, tokens_not_before INTEGER);
                    CREATE TABLE memberships(grp TEXT NOT NULL, device TEXT NOT NULL, PRIMARY KEY(grp, device));
                    CREATE INDEX memberships_device ON memberships(device);
                    INSERT INTO devices(id, last_seen, tokens_not_before) VALUES('old-rev', NULL, {DateTimeOffset.UtcNow.AddMinutes(1).ToUnixTimeMilliseconds()});
                    PRAGMA application_id = 1145520468; PRAGMA user_version = 1;
                    """;
                await cmd.ExecuteNonQueryAsync();
            }
            await using var gw = await TestGateway.StartAsync(dataPath: dir);
            Assert.Equal(401, await HandshakeStatusAsync(gw, "old-rev", gw.Token("old-rev")));
            Assert.Equal(HttpStatusCode.NoContent, (await gw.Api.DeleteAsync("api/devices/old-rev")).StatusCode);
            Assert.Equal(401, await HandshakeStatusAsync(gw, "old-rev", gw.Token("old-rev")));
        }
        finally
        {
            TempFolder.Delete(dir);
        }
    }
}
