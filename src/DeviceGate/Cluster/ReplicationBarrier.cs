using StackExchange.Redis;

namespace DeviceGate.Cluster;

/// <summary>
/// DeviceGate:Redis:MinReplicas: a durable write is acknowledged only once Redis's <c>WAIT</c> says that many replicas
/// have it. WAIT covers every write made before it on the same connection, so the barrier is a group commit: at
/// most one WAIT is outstanding, and a caller whose write came back while one was on its way waits for the next,
/// which covers it (and every other write of that moment). Durable writes and their WAITs have a connection of
/// their own: a WAIT blocks its connection on the server until the replicas answer or the timeout passes, which must
/// not hold up presence and reads.
/// </summary>
internal sealed class ReplicationBarrier(IConnectionMultiplexer redis, int replicas, TimeSpan timeout)
{
    private readonly Lock _gate = new();
    private TaskCompletionSource<bool>? _next;
    private bool _running;

    public IDatabase Db => redis.GetDatabase();

    public Storage.ReplicationTimeoutException TimedOut() => new(replicas, timeout);

    /// <summary>True once at least MinReplicas replicas have every write this connection made before the call.</summary>
    public Task<bool> ConfirmAsync()
    {
        lock (_gate)
        {
            _next ??= new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            var confirmed = _next.Task;
            if (!_running)
            {
                _running = true;
                _ = RunAsync();
            }
            return confirmed;
        }
    }

    private async Task RunAsync()
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
                var acked = (long)await Db.ExecuteAsync("WAIT", replicas, (long)timeout.TotalMilliseconds).ConfigureAwait(false);
                waiting.SetResult(acked >= replicas);
            }
            catch (Exception e)
            {
                waiting.SetException(e);
            }
        }
    }
}
