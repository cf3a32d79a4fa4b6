using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace DeviceGate.Tests.Infrastructure;

/// <summary>
/// A real redis-server on a loopback port (installed by .ci/run). <see cref="Shared"/> serves tests that only need
/// a Redis (each uses its own key prefix); tests that stop and restart Redis start their own.
/// </summary>
public sealed class RedisServer : IDisposable
{
    private static readonly Lazy<RedisServer> LazyShared = new(() =>
    {
        var server = Start();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => server.Dispose();
        return server;
    });

    private readonly string _dir;
    private readonly bool _persistent;
    private readonly string[] _extra;
    private readonly string? _sentinelConfig;
    private Process? _process;

    private RedisServer(int port, string dir, bool persistent, string[] extra, string? sentinelConfig = null)
    {
        Port = port;
        _dir = dir;
        _persistent = persistent;
        _extra = extra;
        _sentinelConfig = sentinelConfig;
    }

    public static RedisServer Shared => LazyShared.Value;

    public int Port { get; }

    /// <summary>A StackExchange.Redis connection string that retries while the server is away.</summary>
    public string Configuration => $"127.0.0.1:{Port},abortConnect=false,connectTimeout=2000,syncTimeout=2000,asyncTimeout=2000";

    /// <summary>With <paramref name="persistent"/>, AOF with fsync on every write: what the no-loss promise needs.</summary>
    public static RedisServer Start(bool persistent = false, params string[] extra)
    {
        var server = new RedisServer(FreePort(), TempFolder.Create(), persistent, extra);
        server.Launch();
        return server;
    }

    /// <summary>
    /// A Sentinel (redis-server --sentinel) watching <paramref name="primaryPort"/> as <paramref name="service"/>, quorum 2;
    /// it calls the primary down after <paramref name="downAfterMilliseconds"/> without an answer.
    /// </summary>
    public static RedisServer StartSentinel(string service, int primaryPort, int downAfterMilliseconds = 1000)
    {
        var port = FreePort();
        var dir = TempFolder.Create();
        var config = Path.Combine(dir, "sentinel.conf");
        File.WriteAllLines(config,
        [
            $"port {port}",
            "bind 127.0.0.1",
            $"dir {dir}",
            $"sentinel monitor {service} 127.0.0.1 {primaryPort} 2",
            $"sentinel down-after-milliseconds {service} {downAfterMilliseconds}",
            $"sentinel failover-timeout {service} 10000",
            $"sentinel parallel-syncs {service} 1",
        ]);
        var server = new RedisServer(port, dir, false, [], config);
        server.Launch();
        return server;
    }

    private static int FreePort() => Loopback.FreePort();

    /// <summary>redis-cli against this server, bounded; its output.</summary>
    public string Cli(params string[] args)
    {
        var info = new ProcessStartInfo("redis-cli") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "-h", "127.0.0.1", "-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture) }.Concat(args)) info.ArgumentList.Add(a);
        using var p = Process.Start(info)!;
        var output = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(10_000)) p.Kill();
        return output.Wait(10_000) ? output.Result : "";
    }

    /// <summary>(Re)starts redis-server on the same port; returns once it answers PING.</summary>
    public void Launch()
    {
        var info = new ProcessStartInfo("redis-server") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        var args = _sentinelConfig is not null
            ? new[] { _sentinelConfig, "--sentinel" }
            : new[] { "--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", _persistent ? "yes" : "no", "--appendfsync", "always", "--dir", _dir }.Concat(_extra);
        foreach (var a in args) info.ArgumentList.Add(a);
        _process = Process.Start(info) ?? throw new InvalidOperationException("redis-server did not start (is it installed?)");
        _process.OutputDataReceived += (_, _) => { };
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        var deadline = DateTime.UtcNow + Timeouts.Default;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                using var tcp = new TcpClient();
                tcp.Connect(IPAddress.Loopback, Port);
                var stream = tcp.GetStream();
                stream.Write("PING\r\n"u8);
                var buffer = new byte[16];
                var n = stream.Read(buffer);
                if (n > 0 && buffer[0] == (byte)'+') return;
            }
            catch (SocketException)
            {
            }
            Thread.Sleep(50);
        }
        throw new TimeoutException($"redis-server did not answer on port {Port}");
    }

    /// <summary>Stops redis-server (SIGKILL: an outage, not a shutdown).</summary>
    public void Stop()
    {
        if (_process is { HasExited: false } p)
        {
            p.Kill();
            p.WaitForExit(10_000);
        }
    }

    public void Dispose()
    {
        Stop();
        TempFolder.Delete(_dir);
    }
}

/// <summary>
/// Redis with Sentinel on loopback: a primary, one replica and three sentinels (quorum 2, down after 1 s), all real
/// redis-server processes. <see cref="Configuration"/> names the sentinels with <c>serviceName</c>, as users do.
/// </summary>
public sealed class RedisSentinelSet : IFailingRedis
{
    public const string Service = "mymaster";

    private RedisSentinelSet(RedisServer primary, RedisServer replica, IReadOnlyList<RedisServer> sentinels)
    {
        Primary = primary;
        Replica = replica;
        Sentinels = sentinels;
    }

    public RedisServer Primary { get; }
    public RedisServer Replica { get; }
    public IReadOnlyList<RedisServer> Sentinels { get; }

    public string Configuration =>
        string.Join(",", Sentinels.Select(s => $"127.0.0.1:{s.Port}")) + $",serviceName={Service},abortConnect=false,connectTimeout=2000,syncTimeout=2000,asyncTimeout=2000";

    /// <summary>
    /// Starts them (sentinels calling the primary down after <paramref name="downAfterMilliseconds"/>); returns once the
    /// replica is in sync and every sentinel knows the replica and the two other sentinels.
    /// </summary>
    public static RedisSentinelSet Start(int downAfterMilliseconds = 1000)
    {
        var primary = RedisServer.Start(persistent: true);
        var replica = RedisServer.Start(false, "--replicaof", "127.0.0.1", primary.Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var sentinels = Enumerable.Range(0, 3).Select(_ => RedisServer.StartSentinel(Service, primary.Port, downAfterMilliseconds)).ToList();
        var set = new RedisSentinelSet(primary, replica, sentinels);
        Until(() => replica.Cli("INFO", "replication").Contains("master_link_status:up", StringComparison.Ordinal), "replica in sync");
        foreach (var s in sentinels)
        {
            Until(() => s.Cli("SENTINEL", "master", Service) is var info && Field(info, "num-slaves") == "1" && Field(info, "num-other-sentinels") == "2",
                $"sentinel {s.Port} sees the set");
        }
        return set;
    }

    /// <summary>The port Sentinel names as the primary now.</summary>
    public int PrimaryPort() =>
        int.Parse(Sentinels[0].Cli("SENTINEL", "get-master-addr-by-name", Service).Split('\n', StringSplitOptions.RemoveEmptyEntries)[1].Trim(),
            System.Globalization.CultureInfo.InvariantCulture);

    // redis-cli prints a map reply one item per line: name, then value.
    private static string? Field(string reply, string name)
    {
        var lines = reply.Split('\n', StringSplitOptions.TrimEntries);
        var i = Array.IndexOf(lines, name);
        return i >= 0 && i + 1 < lines.Length ? lines[i + 1] : null;
    }

    // Polls a condition of processes outside the test (no event to await), bounded.
    private static void Until(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Redis Sentinel set: {what} did not happen in 60 s");
            Thread.Sleep(100);
        }
    }

    public Func<bool> KillPrimaryOf(string key)
    {
        var old = PrimaryPort();
        Primary.Stop();
        return () => PrimaryPort() != old;
    }

    public void RelaunchKilled() => Primary.Launch();

    public void Dispose()
    {
        foreach (var s in Sentinels) s.Dispose();
        Replica.Dispose();
        Primary.Dispose();
    }
}

/// <summary>
/// A Redis Cluster on loopback: three primaries with a replica each (<c>redis-cli --cluster create ...
/// --cluster-replicas 1</c>), real redis-server processes. <see cref="Configuration"/> names every node as seeds.
/// </summary>
public sealed class RedisClusterSet : IFailingRedis
{
    private static readonly Lazy<RedisClusterSet> LazyShared = new(() =>
    {
        var set = Start();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => set.Dispose();
        return set;
    });

    private RedisClusterSet(IReadOnlyList<RedisServer> nodes) => Nodes = nodes;

    /// <summary>One cluster for tests that only need one (each uses its own key prefix); tests that kill a node start their own.</summary>
    public static RedisClusterSet Shared => LazyShared.Value;

    public IReadOnlyList<RedisServer> Nodes { get; }

    public string Configuration =>
        string.Join(",", Nodes.Select(n => $"127.0.0.1:{n.Port}")) + ",abortConnect=false,connectTimeout=2000,syncTimeout=2000,asyncTimeout=2000";

    public static RedisClusterSet Start()
    {
        var nodes = Enumerable.Range(0, 6).Select(_ => RedisServer.Start(false, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000")).ToList();
        var set = new RedisClusterSet(nodes);
        var create = new ProcessStartInfo("redis-cli") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--cluster", "create" }.Concat(nodes.Select(n => $"127.0.0.1:{n.Port}")).Concat(["--cluster-replicas", "1", "--cluster-yes"])) create.ArgumentList.Add(a);
        using (var p = Process.Start(create)!)
        {
            var output = p.StandardOutput.ReadToEndAsync();
            if (!p.WaitForExit(60_000) || p.ExitCode != 0) throw new InvalidOperationException($"redis-cli --cluster create failed: {(output.Wait(1000) ? output.Result : "")}");
        }
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!nodes.All(n => n.Cli("CLUSTER", "INFO").Contains("cluster_state:ok", StringComparison.Ordinal)))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("the Redis Cluster did not reach cluster_state:ok in 60 s");
            Thread.Sleep(100);
        }
        // Replicas that have not finished their first sync answer WAIT with 0: MinReplicas tests start once all have.
        while (nodes.Select(n => n.Cli("INFO", "replication")).Count(i => i.Contains("role:slave", StringComparison.Ordinal) && i.Contains("master_link_status:up", StringComparison.Ordinal)) < 3)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException("the Redis Cluster's replicas did not sync in 60 s");
            Thread.Sleep(100);
        }
        return set;
    }

    private RedisServer? _killed;

    /// <summary>The node that serves <paramref name="slot"/> as primary, as a live node other than <paramref name="except"/> sees it (CLUSTER NODES).</summary>
    public RedisServer? PrimaryOf(int slot, RedisServer? except = null)
    {
        var asked = Nodes.First(n => n != except && n != _killed);
        foreach (var line in asked.Cli("CLUSTER", "NODES").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            // <id> <ip:port@cport> <flags> <primary> <ping> <pong> <epoch> <link> <slot ranges...>
            var f = line.Trim().Split(' ');
            if (f.Length < 9 || !f[2].Contains("master", StringComparison.Ordinal) || f[2].Contains("fail", StringComparison.Ordinal)) continue;
            foreach (var range in f[8..].Where(r => !r.StartsWith('[')))
            {
                var bounds = range.Split('-').Select(b => int.Parse(b, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
                if (slot < bounds[0] || slot > bounds[^1]) continue;
                var port = int.Parse(f[1][(f[1].LastIndexOf(':') + 1)..f[1].IndexOf('@')], System.Globalization.CultureInfo.InvariantCulture);
                return Nodes.FirstOrDefault(n => n.Port == port);
            }
        }
        return null;
    }

    public Func<bool> KillPrimaryOf(string key)
    {
        var slot = DeviceGate.Cluster.OneSlot.Of(key);
        var primary = PrimaryOf(slot) ?? throw new InvalidOperationException($"no primary serves slot {slot}");
        primary.Stop();
        _killed = primary;
        return () => PrimaryOf(slot, primary) is { } now && now != primary && now.Cli("CLUSTER", "INFO").Contains("cluster_state:ok", StringComparison.Ordinal);
    }

    /// <summary>The killed primary comes back with its nodes.conf: the cluster makes it a replica of the one promoted.</summary>
    public void RelaunchKilled()
    {
        _killed?.Launch();
        _killed = null;
    }

    public void Dispose()
    {
        foreach (var n in Nodes) n.Dispose();
    }
}

/// <summary>A Redis set-up whose primary a failover test kills with SIGKILL (Sentinel, or one shard of a Redis Cluster).</summary>
public interface IFailingRedis : IDisposable
{
    string Configuration { get; }

    /// <summary>Kills the primary that holds <paramref name="key"/>; the check it returns is true once a replica took its place.</summary>
    Func<bool> KillPrimaryOf(string key);

    /// <summary>Starts the killed primary again (it rejoins as a replica).</summary>
    void RelaunchKilled();
}
