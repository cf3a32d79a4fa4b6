using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using DeviceGate.Cluster;
using DeviceGate.Tests.Infrastructure;
using StackExchange.Redis;

namespace DeviceGate.Tests.Cluster;

/// <summary>
/// The Redis Cluster slot rule, checked without a cluster: every key of one device shares its slot, every script
/// runs through <see cref="OneSlot"/> (which refuses keys of two slots), scripts build no key names of another
/// tag, and a transaction touches one key. docs/operations.md's key table is generated from <see cref="RedisKeys"/>.
/// </summary>
public sealed partial class RedisLayoutTests
{
    private static readonly string Source = Path.Combine(Repository.Root, "src", "DeviceGate");

    private static IEnumerable<(string File, string Text)> ClusterSources() =>
        Directory.EnumerateFiles(Source, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                        && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .Select(f => (Path.GetRelativePath(Source, f), File.ReadAllText(f)));

    [Fact]
    public async Task OneSlot_refuses_a_script_whose_keys_span_two_slots_on_a_single_redis_too()
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(RedisClusterSet.Shared.Configuration);
        // The slot is Redis's own (CLUSTER KEYSLOT on a cluster node).
        foreach (var key in new[] { "p:{abc123}:outbox", "p:{directory}:devices", "p:msg:0193-abc", "{}x", "a{b" })
        {
            Assert.Equal((long)await redis.GetDatabase().ExecuteAsync("CLUSTER", "KEYSLOT", key), OneSlot.Of(key));
        }
        var keys = new RedisKeys("t:");
        OneSlot.Check(redis, [keys.Outbox("a"), keys.State("a"), keys.Message("a", "m1")]);
        var e = Assert.Throws<InvalidOperationException>(() => OneSlot.Check(redis, [keys.Outbox("a"), keys.Outbox("b")]));
        Assert.Contains("two hash slots", e.Message, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => OneSlot.Check(redis, [keys.Outbox("a"), keys.Devices]));
        await Assert.ThrowsAsync<InvalidOperationException>(() => OneSlot.EvaluateAsync(redis.GetDatabase(), "return 1", [keys.Devices, keys.GroupNames]));
    }

    [Fact]
    public void Every_key_of_one_device_shares_the_device_s_slot_and_the_cluster_wide_tags_keep_theirs()
    {
        var keys = new RedisKeys("p:");
        // Every RedisKeys member that takes a device id (and nothing or a string besides).
        var perDevice = typeof(RedisKeys).GetMethods(BindingFlags.Public | BindingFlags.Instance)
            .Where(m => m.ReturnType == typeof(RedisKey) && m.GetParameters() is { Length: 1 or 2 } p && p.All(x => x.ParameterType == typeof(string)) && p[0].Name is "device" or "sender")
            .Where(m => m.Name != nameof(RedisKeys.ExpiryOf)) // an index bucket chosen by device, touched by single-key commands

            .ToList();
        Assert.True(perDevice.Count >= 12, string.Join(", ", perDevice.Select(m => m.Name)));
        foreach (var device in new[] { "abc123", "kiosk:7", "a.b-c_d" })
        {
            var slot = OneSlot.Of(keys.Outbox(device));
            foreach (var m in perDevice)
            {
                var key = (RedisKey)m.Invoke(keys, m.GetParameters().Length == 1 ? [device] : [device, "x"])!;
                Assert.True(OneSlot.Of(key) == slot, $"{m.Name}({device}) = {key} is not in the device's slot");
            }
        }
        Assert.Equal(OneSlot.Of(keys.Devices), OneSlot.Of(keys.TokensNotBefore));
        Assert.Equal(OneSlot.Of(keys.Devices), OneSlot.Of(keys.DeviceIndex));
        Assert.Equal(OneSlot.Of(keys.Group("g1")), OneSlot.Of(keys.GroupNames));
        Assert.Equal(OneSlot.Of(keys.EventSequence), OneSlot.Of(keys.EventStream));
        Assert.Equal(OneSlot.Of(keys.EventSequence), OneSlot.Of(keys.EventsChannel.ToString()));
    }

    [Fact]
    public void Every_script_runs_through_OneSlot_and_builds_no_key_of_another_tag()
    {
        var scripts = 0;
        foreach (var (file, text) in ClusterSources())
        {
            if (file != Path.Combine("Cluster", "OneSlot.cs"))
            {
                Assert.False(text.Contains(".ScriptEvaluate", StringComparison.Ordinal), $"{file} evaluates a script past OneSlot");
            }
            foreach (Match lua in LuaBlock().Matches(text))
            {
                if (!lua.Value.Contains("redis.call", StringComparison.Ordinal)) continue;
                scripts++;
                // A key name built inside Lua from a device id ('{' .. device .. '}') could be of any slot.
                Assert.False(lua.Value.Contains("'{'", StringComparison.Ordinal) || lua.Value.Contains("\"{\"", StringComparison.Ordinal), $"{file}: a script builds a hash-tagged name itself:\n{lua.Value}");
                // Names it builds start from an ARGV prefix the caller took from its KEYS' device (RedisKeys.MessagePrefix).
                foreach (Match call in RedisCall().Matches(lua.Value))
                {
                    var key = call.Groups["key"].Value.Trim();
                    Assert.True(key.StartsWith("KEYS[", StringComparison.Ordinal) || key.StartsWith("ARGV[", StringComparison.Ordinal) || key is "key",
                        $"{file}: redis.call('{call.Groups["cmd"].Value}', {key}...) names a key that is not one of KEYS");
                }
            }
        }
        Assert.True(scripts >= 15, $"{scripts} scripts found: the pattern no longer matches how scripts are written");
    }

    [Fact]
    public void Every_transaction_conditions_and_writes_one_key()
    {
        var transactions = 0;
        foreach (var (file, text) in ClusterSources())
        {
            for (var at = text.IndexOf("CreateTransaction(", StringComparison.Ordinal); at >= 0; at = text.IndexOf("CreateTransaction(", at + 1, StringComparison.Ordinal))
            {
                transactions++;
                var end = text.IndexOf("ExecuteAsync(", at, StringComparison.Ordinal);
                var body = text[at..end];
                var named = TransactionKey().Matches(body).Select(m => m.Groups["key"].Value).Distinct().ToList();
                Assert.True(named.Count == 1, $"{file}: a transaction names {string.Join(", ", named)}");
            }
        }
        Assert.True(transactions >= 1);
    }

    /// <summary>Run with DEVICEGATE_UPDATE_DOCS=1 to rewrite the table in docs/operations.md after changing RedisKeys.</summary>
    [Fact]
    public void Docs_operations_md_key_table_is_what_RedisKeys_builds()
    {
        var path = Path.Combine(Repository.Root, "docs", "operations.md");
        var text = File.ReadAllText(path);
        const string begin = "<!-- redis-keys:begin (generated from RedisKeys.Layout by RedisLayoutTests) -->", end = "<!-- redis-keys:end -->";
        var table = new StringBuilder(begin).Append('\n').Append("| key (after the prefix) | holds | slot | Redis drops it |\n|---|---|---|---|\n");
        foreach (var k in RedisKeys.Layout()) table.Append($"| `{k.Name.Replace("|", "\\|", StringComparison.Ordinal)}` | {k.Holds.Replace("|", "\\|", StringComparison.Ordinal)} | {k.Slot} | {k.Expiry} |\n");
        table.Append(end);
        var (a, b) = (text.IndexOf(begin, StringComparison.Ordinal), text.IndexOf(end, StringComparison.Ordinal));
        Assert.True(a >= 0 && b > a, "docs/operations.md has no generated key table markers");
        var updated = text[..a] + table + text[(b + end.Length)..];
        if (Environment.GetEnvironmentVariable("DEVICEGATE_UPDATE_DOCS") == "1") File.WriteAllText(path, updated);
        Assert.True(text == updated, "docs/operations.md's key table is stale: run  DEVICEGATE_UPDATE_DOCS=1 dotnet test --filter Docs_operations_md  and commit the file.");
    }

    [GeneratedRegex("\"\"\"(?s:.*?)\"\"\"")]
    private static partial Regex LuaBlock();

    [GeneratedRegex(@"redis\.call\('(?<cmd>[A-Z]+)',\s*(?<key>[^,)]+)")]
    private static partial Regex RedisCall();

    [GeneratedRegex(@"(?:Condition\.\w+|tx\.\w+Async)\((?<key>\w+)")]
    private static partial Regex TransactionKey();
}
