namespace DeviceGate.Storage;

/// <summary>
/// Which exceptions mean "the store (SQLite or Redis) cannot answer right now": the caller gets 503, a device its
/// <c>unavailable</c> error, a background loop logs and goes on. StackExchange.Redis's timeout is a
/// <see cref="TimeoutException"/>, not a RedisException, so it is named here too. So is a command StackExchange.Redis
/// abandons without an answer (a task canceled that nobody asked to cancel: seen during a Sentinel failover, when
/// the connection to the old primary is torn down under a pending GET); a cancellation someone asked for (a request
/// aborted, shutdown) is not a store failure.
/// </summary>
internal static class StoreFailures
{
    public static bool Is(Exception e) =>
        e is StoreUnavailableException or StackExchange.Redis.RedisException or StackExchange.Redis.RedisTimeoutException
            // Refused before sending (a Redis Cluster primary demoted by a failover, until the slot map is read again).
            or StackExchange.Redis.RedisCommandException
            or TaskCanceledException { CancellationToken.IsCancellationRequested: false };
}
