namespace DeviceGate.Client;

/// <summary>What a client does after the gateway closed its connection (docs/protocol.md, "Close codes").</summary>
public enum ReconnectAction
{
    /// <summary>Reconnect after the usual jittered backoff.</summary>
    Backoff,

    /// <summary>Reconnect at once (a fresh token is asked for first).</summary>
    Now,

    /// <summary>Reconnect, but not sooner than the rule's minimum delay.</summary>
    Long,

    /// <summary>Do not reconnect (4000: another connection took the id over).</summary>
    Stop,
}

/// <summary>The close-code table both SDKs follow: the same rules as the JavaScript client's <c>closeRule</c>.</summary>
public static class CloseRules
{
    /// <summary>The rule for a close with <paramref name="code"/> and <paramref name="reason"/>, and the least delay before the next attempt.</summary>
    public static (ReconnectAction Action, TimeSpan MinDelay) For(int code, string? reason) => code switch
    {
        4000 => (ReconnectAction.Stop, TimeSpan.Zero),
        1008 when reason is "token_expired" or "token_revoked" => (ReconnectAction.Now, TimeSpan.Zero),
        1008 when reason is "rate_limited" => (ReconnectAction.Long, TimeSpan.FromSeconds(10)),
        // policy, and any 1008 reason this client does not know: a long backoff.
        1008 => (ReconnectAction.Long, TimeSpan.FromSeconds(30)),
        1002 or 1007 => (ReconnectAction.Long, TimeSpan.FromSeconds(30)),
        // 1000 we did not ask for, 1001 shutdown, 1006 aborted, 1009, 1011, 4001, 4002, and anything unknown.
        _ => (ReconnectAction.Backoff, TimeSpan.Zero),
    };
}
