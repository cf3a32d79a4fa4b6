using System.Collections.Concurrent;
using System.Net;
using StackExchange.Redis;

namespace DeviceGate.Cluster;

/// <summary>
/// DeviceGate:Redis:MinReplicas: a durable write is acknowledged only once Redis's <c>WAIT</c> says that many replicas
/// have it. WAIT covers every write made before it on the same connection to the same primary, so the barrier is a
/// group commit per primary (one on a single Redis or Sentinel, one per shard in a Redis Cluster): at most one WAIT
/// is outstanding per primary, and a caller whose write came back while one was on its way waits for the next,
/// which covers it (and every other write of that moment). Durable writes and their WAITs have a connection of
/// their own: a WAIT blocks its connection on the server until the replicas answer or the timeout passes, which must
/// not hold up presence and reads.
/// </summary>
internal sealed class ReplicationBarrier(IConnectionMultiplexer redis, int replicas, TimeSpan timeout)
{
    private readonly ConcurrentDictionary<EndPoint, Primary> _primaries = new();
    private readonly int _replicas = replicas;
    private readonly long _timeoutMs = (long)timeout.TotalMilliseconds;

    public IDatabase Db => redis.GetDatabase();

    public Task<bool> RefreshTopologyAsync() => redis.ConfigureAsync();

    public Storage.ReplicationTimeoutException TimedOut() => new(_replicas, TimeSpan.FromMilliseconds(_timeoutMs));

    /// <summary>True once at least MinReplicas replicas of each primary that holds one of <paramref name="keys"/> have every write this connection made to it before the call.</summary>
    public async Task<bool> ConfirmAsync(params RedisKey[] keys)
    {
        var servers = keys.Select(k => redis.GetServer(k, flags: CommandFlags.DemandMaster)).DistinctBy(s => s.EndPoint).ToArray();
        var confirmed = await Task.WhenAll(servers.Select(s => _primaries.GetOrAdd(s.EndPoint, _ => new Primary(this)).ConfirmAsync(s))).ConfigureAwait(false);
        return confirmed.All(c => c);
    }

    private sealed class Primary(ReplicationBarrier owner)
    {
        private readonly Lock _gate = new();
        private TaskCompletionSource<bool>? _next;
        private bool _running;

        public Task<bool> ConfirmAsync(IServer server)
        {
            lock (_gate)
            {
                _next ??= new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
                var confirmed = _next.Task;
                if (!_running)
                {
                    _running = true;
                    _ = RunAsync(server);
                }
                return confirmed;
            }
        }

        private async Task RunAsync(IServer server)
        {
            while (true)
            {
                TaskCompletionSource<bool> waiting;
                lock (_gate)
                {
                    if (_next is null)
                    {
                        _running = false;
                        return;
                    }
                    waiting = _next;
                    _next = null;
                }
                try
                {
                    var acked = (long)await server.ExecuteAsync("WAIT", owner._replicas, owner._timeoutMs).ConfigureAwait(false);
                    waiting.SetResult(acked >= owner._replicas);
                }
                catch (Exception e)
                {
                    waiting.SetException(e);
                }
            }
        }
    }
}
