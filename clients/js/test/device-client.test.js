// DeviceClient against the real DeviceGate server (a child process on 127.0.0.1) with the `ws` package.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import WebSocket from 'ws';
import { DeviceClient, DeviceGateError, RpcError } from '../src/index.js';
import { sseFrames } from '../src/gateway-client.js';
import { startGateway, mintToken, api, apiKey, Inbox, eventually, withTimeout } from './gateway.js';

/** A DeviceClient with the ws implementation, closed when the test ends. */
function device(t, gateway, deviceId, options = {}) {
  const client = new DeviceClient({
    url: gateway.url,
    deviceId,
    token: () => mintToken(deviceId),
    WebSocket,
    initialBackoffMs: 100,
    maxBackoffMs: 1_000,
    ...options,
  });
  t.after(() => client.close());
  return client;
}

/** Collects the states a client goes through, and lets a test await one. */
function states(client) {
  const seen = [];
  const waiters = [];
  client.onStateChange = (s) => {
    seen.push(s);
    for (const w of waiters.filter((x) => x.state === s)) w.resolve();
  };
  return {
    seen,
    /** Resolves once `state` was reached at or after position `from` of `seen` (so a fast transition is not missed). */
    reach(state, from = 0) {
      if (seen.slice(from).includes(state)) return Promise.resolve();
      return withTimeout(new Promise((resolve) => waiters.push({ state, resolve })), undefined, `never reached ${state}`);
    },
  };
}

test('messages arrive in every content type, are acked after the handler, and rpcs are answered', async (t) => {
  const gw = await startGateway(t);
  const inbox = new Inbox();
  const d = device(t, gw, 'js-1', {
    onMessage: (m) => inbox.push(m),
    onRpc: (data) => ({ echo: data, battery: 87 }),
  });
  await d.connect();
  assert.equal(d.state, 'connected');

  const json = await api(gw, 'POST', '/api/devices/js-1/messages', { temp: 21.5 });
  assert.equal(json.status, 202);
  const m1 = await inbox.next();
  assert.deepEqual(m1.data, { temp: 21.5 });
  assert.equal(m1.from, 'server');
  assert.equal(m1.id, json.body.id);

  await api(gw, 'POST', '/api/devices/js-1/messages', 'reboot');
  assert.equal((await inbox.next()).data, 'reboot');

  await api(gw, 'POST', '/api/devices/js-1/messages', new Uint8Array([0, 255, 7]));
  assert.deepEqual([...(await inbox.next()).binary], [0, 255, 7]);

  // The ack reached the gateway: the message's status says so.
  await eventually(async () => (await api(gw, 'GET', `/api/messages/${json.body.id}`)).body.status === 'acked', undefined, 'never acked');

  const rpc = await api(gw, 'POST', '/api/devices/js-1/rpc?timeout=5', { cmd: 'status' });
  assert.equal(rpc.status, 200);
  assert.deepEqual(rpc.body, { echo: { cmd: 'status' }, battery: 87 });
});

test('an rpc handler that throws RpcError answers with its code (502 for the caller)', async (t) => {
  const gw = await startGateway(t);
  const d = device(t, gw, 'js-rpc', {
    onRpc: () => {
      throw new RpcError('busy', 'try later');
    },
  });
  await d.connect();
  const r = await api(gw, 'POST', '/api/devices/js-rpc/rpc?timeout=5', { cmd: 'x' });
  assert.equal(r.status, 502);
  assert.equal(r.body.code, 'busy');
  assert.equal(r.body.message, 'try later');
});

test('send, publish, join and leave between two SDK devices; gateway errors reject with their code', async (t) => {
  const gw = await startGateway(t);
  const inbox = new Inbox();
  const a = device(t, gw, 'js-a');
  const b = device(t, gw, 'js-b', { onMessage: (m) => inbox.push(m) });
  await Promise.all([a.connect(), b.connect()]);

  const sent = await a.send('js-b', { hello: 1 });
  assert.equal(sent.status, 'sent');
  const got = await inbox.next();
  assert.equal(got.id, sent.id);
  assert.equal(got.from, 'js-a');
  assert.deepEqual(got.data, { hello: 1 });

  await b.join('room');
  // The join is handled in order on b's connection; a's publish travels on another one, so wait until it took effect.
  await eventually(async () => (await api(gw, 'GET', '/api/groups/room')).body.devices.includes('js-b'), undefined, 'b never joined');
  const published = await a.publish('room', 'hi room');
  assert.equal(published.status, 'sent');
  const p = await inbox.next();
  assert.equal(p.group, 'room');
  assert.equal(p.data, 'hi room');

  await assert.rejects(a.send('nobody', 1), (e) => e instanceof DeviceGateError && e.code === 'offline');
  // With a ttl a device may queue only for devices the gateway knows: a made-up id is refused too.
  await assert.rejects(a.send('nobody', 1, { ttl: 60 }), (e) => e instanceof DeviceGateError && e.code === 'offline');
  await api(gw, 'PUT', '/api/groups/known/devices/nobody');
  const queued = await a.send('nobody', 1, { ttl: 60 });
  assert.equal(queued.status, 'queued');

  await b.leave('room');
  // Envelopes are handled in order: after the leave, the group no longer lists b.
  await eventually(async () => (await api(gw, 'GET', '/api/groups/room')).body.devices.length === 0, undefined, 'b still in room');
});

test('messages queued while the server was killed (-9) reach the handler exactly once after it restarts', async (t) => {
  const first = await startGateway(t);
  const seen = [];
  const d = device(t, first, 'js-durable', { onMessage: (m) => seen.push(m.data) });
  const s = states(d);
  await d.connect();
  const mark = s.seen.length;
  await first.kill();
  await s.reach('reconnecting', mark);

  const second = await startGateway(t, { dataDir: first.dataDir, port: first.port });
  // Queued for the device whether or not it is back yet; delivery happens on (re)connect.
  for (let i = 0; i < 20; i++) {
    const r = await api(second, 'POST', '/api/devices/js-durable/messages?ttl=60', { n: i });
    assert.equal(r.status, 202);
  }
  await eventually(() => seen.length >= 20, undefined, `only ${seen.length} of 20 arrived`);
  await eventually(async () => (await api(second, 'GET', '/api/devices/js-durable')).body.queued === 0, undefined, 'still queued');
  assert.deepEqual(seen.map((x) => x.n), [...Array(20).keys()]);
});

test('a redelivered message is not handed to the handler twice (ack lost with the connection)', async (t) => {
  const gw = await startGateway(t, { args: ['--DeviceGate:Delivery:AckTimeout=00:00:30'] });
  const calls = [];
  let release;
  const handlerEntered = new Inbox();
  const d = device(t, gw, 'js-dedupe', {
    onMessage: async (m) => {
      calls.push(m.id);
      handlerEntered.push(m.id);
      await new Promise((r) => (release = r));
    },
  });
  const s = states(d);
  await d.connect();
  const sent = await api(gw, 'POST', '/api/devices/js-dedupe/messages?ttl=60', { job: 1 });
  await handlerEntered.next();
  // The connection goes away while the handler runs, so its ack cannot be written; the gateway redelivers on reconnect.
  const mark = s.seen.length;
  assert.equal((await api(gw, 'DELETE', '/api/devices/js-dedupe/connection')).status, 204);
  await s.reach('reconnecting', mark);
  release();
  await s.reach('connected', mark);
  await eventually(async () => (await api(gw, 'GET', `/api/messages/${sent.body.id}`)).body.status === 'acked', undefined, 'never acked');
  const status = await api(gw, 'GET', `/api/messages/${sent.body.id}`);
  assert.ok(status.body.attempts >= 2, `delivered ${status.body.attempts} time(s)`);
  assert.deepEqual(calls, [sent.body.id]);
});

test('a message whose handler throws stays unacked and comes again', async (t) => {
  const gw = await startGateway(t, { args: ['--DeviceGate:Delivery:AckTimeout=00:00:00.300'] });
  let failures = 1;
  const handled = new Inbox();
  const errors = [];
  const d = device(t, gw, 'js-retry', {
    onMessage: (m) => {
      if (failures-- > 0) throw new Error('disk full');
      handled.push(m);
    },
    onError: (e) => errors.push(e.code),
  });
  await d.connect();
  const sent = await api(gw, 'POST', '/api/devices/js-retry/messages?ttl=60', { job: 2 });
  const m = await handled.next();
  assert.equal(m.id, sent.body.id);
  assert.deepEqual(errors, ['handler_failed']);
});

test('after 1008 token_expired the token provider is asked again and the device comes back', async (t) => {
  const gw = await startGateway(t);
  let calls = 0;
  const d = device(t, gw, 'js-expiry', {
    // The first token expires within seconds (the gateway allows 30 s of clock skew, so exp lies in the past): 5 s,
    // so a connect slowed down by a busy machine still gets in before it does (at 2 s one CI run got a 401).
    token: () => mintToken('js-expiry', { ttlSeconds: ++calls === 1 ? -25 : 3600 }),
  });
  const s = states(d);
  await d.connect();
  const mark = s.seen.length;
  await s.reach('reconnecting', mark);
  assert.deepEqual(d.lastClose, { code: 1008, reason: 'token_expired' });
  await s.reach('connected', mark);
  assert.equal(calls, 2);
  assert.equal((await api(gw, 'GET', '/api/devices/js-expiry')).body.online, true);
});

test('a 4000 takeover is not fought: the replaced client stops', async (t) => {
  const gw = await startGateway(t);
  let tokenCalls = 0;
  const errors = [];
  const first = device(t, gw, 'js-twin', {
    token: () => (tokenCalls++, mintToken('js-twin')),
    onError: (e) => errors.push(e.code),
  });
  const s = states(first);
  await first.connect();
  const second = device(t, gw, 'js-twin');
  await second.connect();
  await s.reach('replaced');
  assert.deepEqual(first.lastClose, { code: 4000, reason: 'replaced' });
  assert.deepEqual(errors, ['replaced']);
  // The second connection keeps the id: a message reaches it, and the first never asked for another token.
  const inbox = new Inbox();
  second.onMessage = (m) => inbox.push(m);
  await api(gw, 'POST', '/api/devices/js-twin/messages', 'still here');
  assert.equal((await inbox.next()).data, 'still here');
  assert.equal(tokenCalls, 1);
  assert.equal(first.state, 'replaced');
});

test('backoff honours Retry-After when the gateway is full', async (t) => {
  const gw = await startGateway(t, { args: ['--DeviceGate:Limits:MaxConnections=1'] });
  const holder = device(t, gw, 'js-holder');
  await holder.connect();
  const attempts = [];
  const waiting = device(t, gw, 'js-waiting', {
    token: () => (attempts.push(Date.now()), mintToken('js-waiting')),
    initialBackoffMs: 50,
    maxBackoffMs: 100,
  });
  void waiting.connect().catch(() => {});
  await eventually(() => attempts.length >= 2, undefined, 'no second attempt');
  // A well-formed upgrade with a token (cheaper refusals come before the connection cap).
  const retryAfter = await new Promise((resolve, reject) => {
    const headers = { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version': '13', Authorization: `Bearer ${mintToken('probe')}` };
    http.get(`${gw.url}/ws?deviceId=probe`, { headers }, (res) => {
      res.resume();
      resolve(res.statusCode === 503 ? Number(res.headers['retry-after']) : -res.statusCode);
    }).on('error', reject);
  });
  assert.ok(retryAfter >= 1, `Retry-After ${retryAfter}`);
  // Without Retry-After the second attempt would come within 100 ms.
  assert.ok(attempts[1] - attempts[0] >= retryAfter * 1000 - 50, `retried after ${attempts[1] - attempts[0]} ms`);
  // Room again: the waiting device gets in by itself.
  await holder.close();
  await withTimeout(waiting.connect(), 20_000, 'never connected');
});

test('a refused first connection rejects connect() with the status', async (t) => {
  const gw = await startGateway(t);
  const d = device(t, gw, 'js-bad', { token: 'not-a-jwt' });
  await assert.rejects(d.connect(), (e) => e instanceof DeviceGateError && e.code === 'refused' && e.status === 401);
  assert.equal(d.state, 'closed');
});

test('close() closes with 1000 and the client stays closed', async (t) => {
  const gw = await startGateway(t);
  const d = device(t, gw, 'js-bye');
  await d.connect();
  // The gateway subscribes a reader before it answers with headers: once fetch resolves, no event can be missed.
  const ac = new AbortController();
  t.after(() => ac.abort());
  const response = await fetch(`${gw.url}/api/events?device=js-bye&types=disconnected`, { headers: { Authorization: `Bearer ${apiKey}` }, signal: ac.signal });
  const frames = sseFrames(response.body);
  await d.close();
  assert.equal(d.state, 'closed');
  const frame = await withTimeout(frames.next(), undefined, 'no disconnected event');
  assert.equal(JSON.parse(frame.value.data).code, 1000);
  await frames.return(undefined);
  await assert.rejects(d.send('x', 1), (err) => err.code === 'not_connected');
  assert.equal(d.state, 'closed');
});

test('a device reports its own state and gets the reported version back', async (t) => {
  const gw = await startGateway(t, { args: ['--DeviceGate:State:MaxBytes=100'] });
  const d = device(t, gw, 'js-reporter');
  await d.connect();
  assert.deepEqual(await d.reportState({ fw: '1.3' }), { version: 1 });
  assert.deepEqual(await d.reportState({ fw: '1.4', screen: { on: true } }), { version: 2 });
  await assert.rejects(d.reportState({ big: 'x'.repeat(200) }), (e) => e instanceof DeviceGateError && e.code === 'state_too_large');
  const doc = (await api(gw, 'GET', '/api/devices/js-reporter/state')).body;
  assert.deepEqual(doc.reported, { fw: '1.4', screen: { on: true } });
});

test('the desired-state handler gets the whole desired document, version and delta, and is acked after it returns', async (t) => {
  const gw = await startGateway(t, { args: ['--DeviceGate:Delivery:AckTimeout=00:00:01'] });
  await api(gw, 'PATCH', '/api/devices/js-shadow/state/reported', { fw: '1.3', brightness: 70 });
  await api(gw, 'PATCH', '/api/devices/js-shadow/state/desired', { fw: '1.4', brightness: 70 });
  const calls = new Inbox();
  let failOnce = true;
  const d = device(t, gw, 'js-shadow', {
    onDesiredState: (state) => {
      calls.push(state);
      if (failOnce) {
        failOnce = false;
        throw new Error('not yet'); // unacked: the gateway sends it again after the ack timeout
      }
    },
  });
  await d.connect();
  const first = await calls.next();
  assert.equal(first.version, 1);
  assert.deepEqual(first.desired, { fw: '1.4', brightness: 70 });
  assert.deepEqual(first.delta, { fw: '1.4' });
  const again = await calls.next();
  assert.equal(again.messageId, first.messageId);
  await eventually(async () => (await api(gw, 'GET', '/api/devices/js-shadow/state')).body.ackedVersion === 1, undefined, 'never acked');

  await api(gw, 'PATCH', '/api/devices/js-shadow/state/desired', { brightness: 40 });
  const second = await calls.next();
  assert.equal(second.version, 2);
  assert.deepEqual(second.desired, { fw: '1.4', brightness: 40 });
  await eventually(async () => (await api(gw, 'GET', '/api/devices/js-shadow/state')).body.ackedVersion === 2, undefined, 'version 2 never acked');
});
