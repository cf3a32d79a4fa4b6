using DeviceGate.Client;

namespace DeviceGate.Tests.Client;

/// <summary>The .NET client follows the close-code table of docs/protocol.md, as the JavaScript client's closeRule does.</summary>
public sealed class CloseRulesTests
{
    [Theory]
    [InlineData(4000, "replaced", ReconnectAction.Stop, 0)]
    [InlineData(1008, "token_expired", ReconnectAction.Now, 0)]
    [InlineData(1008, "token_revoked", ReconnectAction.Now, 0)]
    [InlineData(1008, "rate_limited", ReconnectAction.Long, 10)]
    [InlineData(1008, "policy", ReconnectAction.Long, 30)]
    [InlineData(1008, "something_new", ReconnectAction.Long, 30)]
    [InlineData(1008, null, ReconnectAction.Long, 30)]
    [InlineData(1002, "", ReconnectAction.Long, 30)]
    [InlineData(1007, "", ReconnectAction.Long, 30)]
    [InlineData(1001, "shutdown", ReconnectAction.Backoff, 0)]
    [InlineData(1011, "internal_error", ReconnectAction.Backoff, 0)]
    [InlineData(4001, "disconnected", ReconnectAction.Backoff, 0)]
    [InlineData(4002, "slow_consumer", ReconnectAction.Backoff, 0)]
    public void Each_close_has_its_rule(int code, string? reason, ReconnectAction action, int minSeconds) =>
        Assert.Equal((action, TimeSpan.FromSeconds(minSeconds)), CloseRules.For(code, reason));
}
