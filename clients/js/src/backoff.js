/**
 * The delay before reconnect attempt `attempt` (1-based): exponential with full jitter, so a fleet that lost its
 * gateway at one instant comes back spread over the window instead of in one wave. `random` is injectable for tests.
 * @param {number} attempt
 * @param {number} initialMs
 * @param {number} maxMs
 * @param {() => number} [random]
 * @returns {number}
 */
export function backoffDelay(attempt, initialMs, maxMs, random = Math.random) {
  const cap = Math.min(maxMs, initialMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  return Math.floor(random() * cap);
}

/**
 * What a close means for the next attempt, from the close-code table in docs/protocol.md.
 * `stop`: do not reconnect; `now`: reconnect at once (a fresh token is fetched first); `long`: at least `minMs`;
 * `backoff`: the usual jittered delay. `report` names an error worth telling the application about.
 * @param {number} code
 * @param {string} reason
 * @returns {{ action: 'stop' | 'now' | 'backoff' | 'long', minMs?: number, report?: string }}
 */
export function closeRule(code, reason) {
  switch (code) {
    case 4000:
      // Another connection took the id over: two clients share one id. Fighting would bounce both forever.
      return { action: 'stop', report: 'replaced' };
    case 1008:
      if (reason === 'token_expired' || reason === 'token_revoked') return { action: 'now' };
      if (reason === 'rate_limited') return { action: 'long', minMs: 10_000, report: 'rate_limited' };
      // `policy`, and any 1008 reason this client does not know: a long backoff.
      return { action: 'long', minMs: 30_000, report: reason || 'policy' };
    case 1009:
      return { action: 'backoff', report: 'too_big' };
    case 1002:
    case 1007:
      return { action: 'long', minMs: 30_000, report: 'protocol_error' };
    default:
      // 1000 we did not ask for, 1001 shutdown, 1006 aborted, 1011 store_unavailable, 4001 disconnected,
      // 4002 slow_consumer, and anything unknown.
      return { action: 'backoff' };
  }
}
