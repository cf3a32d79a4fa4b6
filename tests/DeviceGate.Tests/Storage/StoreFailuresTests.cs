using DeviceGate.Storage;

namespace DeviceGate.Tests.Storage;

/// <summary>Which exceptions the gateway answers as "the store cannot answer right now" (503 / unavailable).</summary>
public sealed class StoreFailuresTests
{
    [Fact]
    public void A_command_the_redis_client_abandons_is_a_store_failure_and_a_cancellation_someone_asked_for_is_not()
    {
        // StackExchange.Redis completes a pending command it gives up on as canceled, with no token behind it.
        Assert.True(StoreFailures.Is(new TaskCanceledException()));
        Assert.True(StoreFailures.Is(new StackExchange.Redis.RedisTimeoutException("timeout", StackExchange.Redis.CommandStatus.Sent)));
        Assert.True(StoreFailures.Is(new StoreUnavailableException(new InvalidOperationException("x"))));

        using var asked = new CancellationTokenSource();
        asked.Cancel();
        Assert.False(StoreFailures.Is(new TaskCanceledException("request aborted", null, asked.Token)));
        Assert.False(StoreFailures.Is(new OperationCanceledException(asked.Token)));
        Assert.False(StoreFailures.Is(new InvalidOperationException("a bug")));
    }
}
