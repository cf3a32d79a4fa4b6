// Pure logic: the reconnect delay and the close-code rules of docs/protocol.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, closeRule } from '../src/index.js';

test('backoff doubles its bound per attempt, stays under the cap, and is fully jittered', () => {
  assert.equal(backoffDelay(1, 500, 30_000, () => 0.999), 499);
  assert.equal(backoffDelay(2, 500, 30_000, () => 0.999), 999);
  assert.equal(backoffDelay(5, 500, 30_000, () => 0.5), 4_000);
  assert.equal(backoffDelay(50, 500, 30_000, () => 0.999), 29_970);
  assert.equal(backoffDelay(3, 500, 30_000, () => 0), 0);
  for (let attempt = 1; attempt < 200; attempt++) {
    const d = backoffDelay(attempt, 500, 30_000);
    assert.ok(d >= 0 && d < 30_000 && Number.isInteger(d));
  }
});

test('close codes map to the documented client behaviour', () => {
  assert.deepEqual(closeRule(4000, 'replaced'), { action: 'stop', report: 'replaced' });
  assert.deepEqual(closeRule(1008, 'token_expired'), { action: 'now' });
  assert.deepEqual(closeRule(1008, 'token_revoked'), { action: 'now' });
  assert.equal(closeRule(1008, 'rate_limited').minMs, 10_000);
  assert.deepEqual(closeRule(1008, 'policy'), { action: 'long', minMs: 30_000, report: 'policy' });
  assert.equal(closeRule(1008, 'something_new').action, 'long');
  assert.deepEqual(closeRule(1009, 'too_big'), { action: 'backoff', report: 'too_big' });
  for (const code of [1000, 1001, 1006, 1011, 4001, 4002, 4999]) assert.equal(closeRule(code, '').action, 'backoff');
});
