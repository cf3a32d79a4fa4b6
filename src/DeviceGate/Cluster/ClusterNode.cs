using System.Text.Json;
using DeviceGate.Protocol;
using DeviceGate.Rpc;
using Microsoft.Extensions.Options;
using StackExchange.Redis;
using DeviceGate.Sessions;

namespace DeviceGate.Cluster;

/// <summary>
/// This node's membership of the cluster: renews its lease, listens on its own channel and the broadcast channel,
/// carries out what other nodes ask (deliver, close, rpc), and re-registers its devices after Redis comes back.
/// With each renewal it checks that Redis still holds the data set it joined (the instance key): after a FLUSHALL,
/// or a restart without persistence, it registers its devices again and numbers events above what it has seen.
/// </summary>
internal sealed class ClusterNode(
    IConnectionMultiplexer redis,
    RedisKeys keys,
    NodeIdentity node,
    ConnectionRegistry registry,
    IPresence presence,
    IClusterBus bus,
    RpcCoordinator rpcs,
    Events.EventHub events,
    Delivery.DeliveryTracker tracker,
    Delivery.LocalRouter local,
    ClusterStats stats,
    UndeliveredHints hints,
    Takeovers takeovers,
    RedisStore store,
    IOptions<GatewayOptions> options,
    TimeProvider time,
    ILogger<ClusterNode> logger) : BackgroundService
{
    private TimeSpan Lease => options.Value.Cluster.PresenceLease;

    // The instance value this node last saw in Redis; null until the first check.
    private string? _instance;
    private int _checking;

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        var sub = redis.GetSubscriber();
        (await sub.SubscribeAsync(keys.NodeChannel(node.Id)).ConfigureAwait(false)).OnMessage(OnMessageAsync);
        (await sub.SubscribeAsync(keys.BroadcastChannel).ConfigureAwait(false)).OnMessage(OnMessageAsync);
        // One queue for the events channel keeps them in the order Redis published them.
        (await sub.SubscribeAsync(keys.EventsChannel).ConfigureAwait(false)).OnMessage(m =>
        {
            try
            {
                events.Receive(Events.GatewayEvent.FromJson((byte[])m.Message!));
            }
            catch (System.Text.Json.JsonException e)
            {
                Log.ClusterError(logger, "event", e.Message);
            }
        });
        redis.ConnectionRestored += (_, e) =>
        {
            if (e.ConnectionType == ConnectionType.Interactive) _ = ReRegisterAsync();
            Troubled();
        };
        // A failover (Sentinel named a new primary, a Redis Cluster shard promoted a replica): what was published as
        // the old primary died, or while this node's subscription moved, may not have arrived.
        redis.ConfigurationChanged += (_, _) => Troubled();
        redis.ConnectionFailed += (_, _) => Troubled();
        try
        {
            // What this node id held in an earlier life is not held now.
            await redis.GetDatabase().KeyDeleteAsync(keys.NodeDevices(node.Id)).ConfigureAwait(false);
            await store.EnsureDeviceIndexAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (Storage.StoreFailures.Is(e))
        {
            Log.ClusterError(logger, "node start", e.Message);
        }
        await RenewLeaseAsync().ConfigureAwait(false);
        await CheckInstanceAsync().ConfigureAwait(false);
        await base.StartAsync(cancellationToken).ConfigureAwait(false);
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(RenewAsync(stoppingToken), DrainHintsAsync(stoppingToken));

    // Set when Redis came back or changed primary: every device here catches up from the store (hops published while
    // this node was not subscribed, or on a primary that died with them, were lost; the store has the messages).
    private int _catchUpAll;

    private void RequestCatchUp() => Volatile.Write(ref _catchUpAll, 1);

    // Until then Redis is settling after trouble (a connection failed or came back, the topology changed): every
    // device here catches up every few seconds, so a hop lost at any moment of a failover, even one published after
    // the first catch-up ran, is found in the store once the failover is over.
    private long _settlingUntil;
    private int _ticks;

    private static readonly TimeSpan Settling = TimeSpan.FromSeconds(20);

    private void Troubled()
    {
        Volatile.Write(ref _settlingUntil, (time.GetUtcNow() + Settling).UtcTicks);
        RequestCatchUp();
    }

    /// <summary>
    /// Every second: devices here that other nodes stored messages for and could not reach catch up from the store;
    /// after Redis came back or changed primary, every device here does (those whose read failed, again next second).
    /// </summary>
    private async Task DrainHintsAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1), time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                await hints.FlushAsync().ConfigureAwait(false);
                var settling = time.GetUtcNow().UtcTicks < Volatile.Read(ref _settlingUntil) && ++_ticks % 3 == 0;
                if (Interlocked.Exchange(ref _catchUpAll, 0) == 1 || settling) await CatchUpAllAsync(stoppingToken).ConfigureAwait(false);
                IReadOnlyList<string> devices;
                do
                {
                    if (await hints.TakeAsync(node.Id, 256).ConfigureAwait(false) is not { } taken)
                    {
                        // The hints cannot be read: what they would name is found by catching everyone up once they can.
                        Troubled();
                        break;
                    }
                    devices = taken;
                    foreach (var device in devices)
                    {
                        if (registry.TryGet(device, out var session) && session.Lane is { } lane && !await lane.CatchUpAsync().ConfigureAwait(false))
                        {
                            await hints.NoteAsync(node.Id, device).ConfigureAwait(false);
                        }
                    }
                }
                while (devices.Count == 256 && !stoppingToken.IsCancellationRequested);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task CatchUpAllAsync(CancellationToken stoppingToken)
    {
        var failed = 0;
        await Parallel.ForEachAsync(registry.All, new ParallelOptions { MaxDegreeOfParallelism = 16, CancellationToken = stoppingToken }, async (session, _) =>
        {
            if (session.Lane is { } lane && !await lane.CatchUpAsync().ConfigureAwait(false)) Interlocked.Increment(ref failed);
        }).ConfigureAwait(false);
        if (failed > 0) RequestCatchUp();
    }

    private async Task RenewAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Lease / 3, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                await RenewLeaseAsync().ConfigureAwait(false);
                await CheckInstanceAsync().ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var db = redis.GetDatabase();
            await Task.WhenAll(db.KeyDeleteAsync(keys.NodeLease(node.Id)), db.KeyDeleteAsync(keys.NodeDevices(node.Id)), db.SetRemoveAsync(keys.Nodes, node.Id)).ConfigureAwait(false);
        }
        catch (Exception e) when (Storage.StoreFailures.Is(e))
        {
        }
    }

    private async Task RenewLeaseAsync()
    {
        try
        {
            var db = redis.GetDatabase();
            var known = db.SetAddAsync(keys.Nodes, node.Id);
            await db.StringSetAsync(keys.NodeLease(node.Id), time.GetUtcNow().ToUnixTimeMilliseconds(), Lease).ConfigureAwait(false);
            await known.ConfigureAwait(false);
            await stats.PublishAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (Storage.StoreFailures.Is(e))
        {
            Log.ClusterError(logger, "lease renewal", e.Message);
        }
    }

    private const string RaiseEventSequenceScript = """
        if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
        return 1
        """;

    /// <summary>
    /// Whether Redis still holds the data set this node joined: the instance key is written once (SET NX) with a
    /// random value; when it is gone, or holds another node's new value, Redis lost its data.
    /// </summary>
    private async Task CheckInstanceAsync()
    {
        if (Interlocked.Exchange(ref _checking, 1) == 1) return;
        try
        {
            var db = redis.GetDatabase();
            var candidate = Guid.NewGuid().ToString("N");
            var created = await db.StringSetAsync(keys.Instance, candidate, when: When.NotExists).ConfigureAwait(false);
            var current = created ? candidate : (string?)await db.StringGetAsync(keys.Instance).ConfigureAwait(false);
            var previous = _instance;
            _instance = current;
            if (previous is null || previous == current) return;
            // Lost: presence, the event counter and the event log are gone (and whatever was stored without persistence).
            var last = events.LastId;
            Log.RedisDataLost(logger, last);
            await OneSlot.EvaluateAsync(db, RaiseEventSequenceScript, [keys.EventSequence], [last]).ConfigureAwait(false);
            events.Lost(last);
            await ReRegisterAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (Storage.StoreFailures.Is(e))
        {
            Log.ClusterError(logger, "instance check", e.Message);
        }
        finally
        {
            Volatile.Write(ref _checking, 0);
        }
    }

    /// <summary>After an outage Redis may have lost presence (no persistence) or other nodes may have moved on: register again.</summary>
    private async Task ReRegisterAsync()
    {
        await RenewLeaseAsync().ConfigureAwait(false);
        foreach (var connection in registry.All)
        {
            try
            {
                if (!connection.IsClosing) connection.Epoch = await presence.RegisterAsync(connection).ConfigureAwait(false);
            }
            catch (Exception e) when (Storage.StoreFailures.Is(e))
            {
                Log.ClusterError(logger, "re-register", e.Message);
            }
        }
    }

    private Task OnMessageAsync(ChannelMessage message)
    {
        OnMessage(message);
        return Task.CompletedTask;
    }

    private void OnMessage(ChannelMessage message)
    {
        BusMessage? m;
        try
        {
            m = JsonSerializer.Deserialize((byte[])message.Message!, BusJsonContext.Default.BusMessage);
        }
        catch (JsonException e)
        {
            Log.ClusterError(logger, "bus message", e.Message);
            return;
        }
        if (m is null) return;
        switch (m.Type)
        {
            case BusMessage.Deliver:
                var delivered = RedisBus.ToMessage(m);
                // The hop across the bus, as a span of the sender's trace on this (the delivering) node; the write and
                // the ack that follow here join it too.
                using (var hop = delivered.Trace == default ? null : Telemetry.Source.StartActivity("DeviceGate bus deliver", System.Diagnostics.ActivityKind.Consumer, delivered.Trace))
                {
                    hop?.SetTag("devicegate.device", m.Device);
                    hop?.SetTag("devicegate.origin", m.Origin);
                    if (hop is not null) delivered.Trace = hop.Context;
                }
                if (!m.Durable) tracker.TrackRemote(m.Device!, delivered);
                local.Deliver(m.Device!, delivered, m.Durable, m.Expires == 0 ? null : DateTimeOffset.FromUnixTimeMilliseconds(m.Expires));
                break;
            case BusMessage.Broadcast when m.Origin != node.Id:
                local.Broadcast(RedisBus.ToMessage(m));
                break;
            case BusMessage.Close:
                // Closing takes the session out of the registry at once (before the close handshake): then the node that
                // asked is told, and its new session's registration ends (see Takeovers).
                local.Close(m.Device!, m.Code, m.Reason ?? "", maxEpoch: m.Epoch);
                if (m.Origin is { } origin && origin != node.Id) _ = ConfirmCloseAsync(origin, m.Device!, m.Epoch);
                break;
            case BusMessage.Closed:
                takeovers.Confirmed(m.Device!, m.Epoch);
                break;
            case BusMessage.Rpc:
                // Not awaited: waiting for the device must not hold up this node's channel.
                _ = RunRpcAsync(m);
                break;
            case BusMessage.RpcReply:
                rpcs.CompleteRemote(m.Id!, m.Failure is null ? new RpcReply(m.ReplyJson, m.ErrorCode, m.ErrorMessage) : null, m.Failure);
                break;
        }
    }

    private async Task ConfirmCloseAsync(string origin, string device, long epoch)
    {
        try
        {
            await bus.ClosedAsync(origin, device, epoch).ConfigureAwait(false);
        }
        catch (Exception e) when (Storage.StoreFailures.Is(e))
        {
            // The asking node stops waiting at its bound.
            Log.ClusterError(logger, "close confirmation", e.Message);
        }
    }

    /// <summary>Runs an rpc asked for by another node's API and sends it the outcome.</summary>
    private async Task RunRpcAsync(BusMessage m)
    {
        try
        {
            await RunRpcCoreAsync(m).ConfigureAwait(false);
        }
        catch (Exception e) when (Storage.StoreFailures.Is(e))
        {
            Log.ClusterError(logger, "rpc", e.Message);
        }
    }

    private async Task RunRpcCoreAsync(BusMessage m)
    {
        var request = RedisBus.ToMessage(m);
        // The delivering half of the caller's rpc span, in its trace (the context came in the bus message).
        using var span = request.Trace == default ? null : Telemetry.Source.StartActivity("DeviceGate rpc deliver", System.Diagnostics.ActivityKind.Consumer, request.Trace);
        span?.SetTag("devicegate.device", m.Device);
        span?.SetTag("devicegate.origin", m.Origin);
        var outcome = await local.InvokeLocalAsync(m.Device!, request.Data, TimeSpan.FromSeconds(m.TimeoutSeconds), CancellationToken.None, m.Id,
            span?.Context ?? request.Trace).ConfigureAwait(false);
        // A timeout is not reported: the calling node times out on its own.
        if (outcome.Status == Delivery.RpcStatus.TimedOut) return;
        await bus.RpcReplyAsync(m.ReplyTo!, m.Id!, outcome.Reply, RemoteRpc.FailureOf(outcome.Status)).ConfigureAwait(false);
    }
}
