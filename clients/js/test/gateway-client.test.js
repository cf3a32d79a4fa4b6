// GatewayClient (the Node backend helper) against the real gateway, with SDK devices on the other end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { DeviceClient, DeviceGateError, GatewayClient } from '../src/index.js';
import { sseFrames } from '../src/gateway-client.js';
import { startGateway, mintToken, apiKey, Inbox, withTimeout } from './gateway.js';

async function connected(t, gw, deviceId, inbox) {
  const d = new DeviceClient({ url: gw.url, deviceId, token: () => mintToken(deviceId), WebSocket, onMessage: (m) => inbox?.push(m), onRpc: (x) => ({ got: x }) });
  t.after(() => d.close());
  await d.connect();
  return d;
}

test('send, broadcast, groups, rpc, status, cancel, disconnect and the event stream', async (t) => {
  const gw = await startGateway(t);
  const gateway = new GatewayClient({ url: gw.url, apiKey });
  const ac = new AbortController();
  t.after(() => ac.abort());
  // The stream's request and the device's connect travel on different connections: a reader the gateway has
  // subscribed (fetch resolves after the headers) learns the connected event's id, and the client resumes from it.
  const raw = await fetch(`${gw.url}/api/events?types=connected`, { headers: { Authorization: `Bearer ${apiKey}` }, signal: ac.signal });
  const frames = sseFrames(raw.body);

  const inbox = new Inbox();
  const d = await connected(t, gw, 'gc-1', inbox);
  const connectedId = Number((await withTimeout(frames.next(), undefined, 'no connected frame')).value.id);
  await frames.return(undefined);

  const events = gateway.events({ types: ['connected', 'message'], lastEventId: connectedId - 1, signal: ac.signal });
  const e = await withTimeout(events.next(), undefined, 'no event');
  assert.equal(e.value.type, 'connected');
  assert.equal(e.value.device, 'gc-1');

  const sent = await gateway.send('gc-1', { a: 1 }, { ttl: 60, idempotencyKey: 'job-1' });
  assert.equal(sent.status, 'sent');
  assert.deepEqual((await inbox.next()).data, { a: 1 });
  const again = await gateway.send('gc-1', { a: 1 }, { ttl: 60, idempotencyKey: 'job-1' });
  assert.equal(again.id, sent.id);

  await gateway.send('gc-1', 'text body');
  assert.equal((await inbox.next()).data, 'text body');
  await gateway.send('gc-1', new Uint8Array([1, 2, 3]));
  assert.deepEqual([...(await inbox.next()).binary], [1, 2, 3]);

  const b = await gateway.broadcast({ all: true });
  assert.equal(b.recipients, 1);
  assert.deepEqual((await inbox.next()).data, { all: true });

  await gateway.addToGroup('floor-2', 'gc-1');
  await gateway.addToGroup('floor-2', 'gc-offline');
  assert.deepEqual((await gateway.group('floor-2')).devices, ['gc-1', 'gc-offline']);
  const g = await gateway.sendToGroup('floor-2', 'lights off', { ttl: 60 });
  assert.deepEqual(g, { recipients: 1, queued: 1 });
  const gm = await inbox.next();
  assert.equal(gm.group, 'floor-2');
  await gateway.removeFromGroup('floor-2', 'gc-offline');
  assert.deepEqual((await gateway.group('floor-2')).devices, ['gc-1']);

  assert.deepEqual(await gateway.rpc('gc-1', { cmd: 'status' }, { timeout: 5 }), { got: { cmd: 'status' } });

  const info = await gateway.device('gc-1');
  assert.equal(info.online, true);
  assert.deepEqual(info.groups, ['floor-2']);
  const page = await gateway.devices({ limit: 10 });
  assert.deepEqual(page.devices.map((x) => x.id), ['gc-1']);

  const batch = await gateway.sendBatch([
    { device: 'gc-1', text: 'b1' },
    { device: 'gc-1', data: { b: 2 } },
    { device: 'gc-1', bytes: new Uint8Array([9]) },
    { device: 'gc-nobody', text: 'lost' },
  ]);
  assert.deepEqual([batch.sent, batch.queued, batch.failed], [3, 0, 1]);
  assert.equal(batch.results[3].type, 'not_connected');
  assert.equal((await inbox.next()).data, 'b1');
  assert.deepEqual((await inbox.next()).data, { b: 2 });
  assert.deepEqual([...(await inbox.next()).binary], [9]);

  // A queued message for an offline device can be cancelled; a sent one cannot.
  const queued = await gateway.send('gc-later', 'later', { ttl: 60 });
  assert.equal(queued.status, 'queued');
  await gateway.cancelMessage(queued.id);
  assert.equal((await gateway.message(queued.id)).status, 'cancelled');
  await assert.rejects(gateway.cancelMessage(sent.id), (err) => err instanceof DeviceGateError && err.status === 409 && err.code === 'already_sent');

  // A device's telemetry to "server" arrives on the stream.
  await d.send('server', { temperature: 21.5 });
  let m;
  do m = (await withTimeout(events.next(), undefined, 'no message event')).value;
  while (m.type !== 'message');
  assert.deepEqual(m.data, { temperature: 21.5 });
  assert.equal(m.device, 'gc-1');

  await gateway.disconnect('gc-1');
  await assert.rejects(gateway.disconnect('gc-nobody'), (err) => err.status === 404 && err.code === 'not_connected');
  const stats = await gateway.stats();
  assert.equal(stats.nodes.length, 1);
  assert.ok(stats.nodes[0].messagesOut >= 5, `messagesOut ${stats.nodes[0].messagesOut}`);
  await assert.rejects(new GatewayClient({ url: gw.url, apiKey: 'wrong' }).stats(),
    (err) => err instanceof DeviceGateError && err.status === 401);
  await events.return(undefined);
});

test('the event stream resumes from Last-Event-ID, and reconnects by itself after a restart with a reset', async (t) => {
  const first = await startGateway(t);
  // A reader the gateway has subscribed (fetch resolves after the headers) learns the id of ev-1's connected event.
  const ac = new AbortController();
  t.after(() => ac.abort());
  const raw = await fetch(`${first.url}/api/events?types=connected`, { headers: { Authorization: `Bearer ${apiKey}` }, signal: ac.signal });
  const frames = sseFrames(raw.body);
  await connected(t, first, 'ev-1');
  const id1 = Number((await withTimeout(frames.next())).value.id);
  await connected(t, first, 'ev-2');
  const id2 = Number((await withTimeout(frames.next())).value.id);
  await frames.return(undefined);

  const gateway = new GatewayClient({ url: first.url, apiKey });
  const events = gateway.events({ types: 'connected', lastEventId: id1 - 1, signal: ac.signal, retryMs: 100 });
  const replayed = [(await withTimeout(events.next())).value, (await withTimeout(events.next())).value];
  assert.deepEqual(replayed.map((e) => [e.seq, e.device]), [[id1, 'ev-1'], [id2, 'ev-2']]);

  await first.stop();
  await startGateway(t, { dataDir: first.dataDir, port: first.port });
  // Its Last-Event-ID is from before the restart: the stream comes back by itself and says reset.
  const reset = (await withTimeout(events.next(), undefined, 'stream did not resume')).value;
  assert.equal(reset.type, 'reset');
  assert.ok(reset.seq > id2);
  await events.return(undefined);
});

test('the event stream skips an entry that is not JSON and resumes after the last good event', async (t) => {
  // A stand-in server: two good events around a broken one, then the stream ends; the second request hangs.
  const { createServer } = await import('node:http');
  const seen = [];
  const server = createServer((req, res) => {
    seen.push(req.headers['last-event-id'] ?? '');
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    if (seen.length > 1) return; // keep the resumed stream open
    res.end('id: 1\ndata: {"seq":1,"type":"message","device":"a"}\n\n'
      + 'id: 2\ndata: {"seq":2,"type":"mess\ndata: age"\n\n'
      + 'id: 3\ndata: {"seq":3,"type":"message","device":"b"}\n\n');
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => { server.closeAllConnections(); server.close(); });
  const gateway = new GatewayClient({ url: `http://127.0.0.1:${server.address().port}`, apiKey: 'k' });
  const ac = new AbortController();
  t.after(() => ac.abort());
  const malformed = [];
  const events = gateway.events({ signal: ac.signal, retryMs: 10, onMalformed: (data) => malformed.push(data) });
  const first = await withTimeout(events.next(), undefined, 'no first event');
  const second = await withTimeout(events.next(), undefined, 'no second event');
  assert.deepEqual([first.value.seq, second.value.seq], [1, 3]);
  assert.equal(malformed.length, 1);
  const third = events.next();
  await withTimeout((async () => { while (seen.length < 2) await new Promise((r) => setTimeout(r, 10)); })(), undefined, 'no reconnect');
  assert.deepEqual(seen, ['', '3']);
  ac.abort();
  await third.catch(() => {});
});

test('device state: patch desired with If-Match, report, read the delta', async (t) => {
  const gw = await startGateway(t);
  const gateway = new GatewayClient({ url: gw.url, apiKey });
  const first = await gateway.patchDesired('js-state', { fw: '1.4', screen: { brightness: 70 } });
  assert.equal(first.desiredVersion, 1);
  await assert.rejects(gateway.patchDesired('js-state', { fw: '1.5' }, { ifMatch: 0 }), (e) => e instanceof DeviceGateError && e.code === 'version_mismatch' && e.status === 412);
  const second = await gateway.patchDesired('js-state', { screen: { brightness: null } }, { ifMatch: 1 });
  assert.deepEqual(second.desired, { fw: '1.4', screen: {} });
  await gateway.patchReported('js-state', { fw: '1.3' });
  const doc = await gateway.getState('js-state');
  assert.deepEqual(doc.delta, { fw: '1.4', screen: {} });
  assert.equal(doc.reportedVersion, 1);
});

test('tags: set, shown on the device, filter the device list, refused when invalid', async (t) => {
  const gw = await startGateway(t);
  const gateway = new GatewayClient({ url: gw.url, apiKey });
  await gateway.setTags('js-tag-1', { site: 'berlin', model: 'k2' });
  await gateway.setTags('js-tag-2', { site: 'berlin' });
  assert.deepEqual((await gateway.device('js-tag-1')).tags, { site: 'berlin', model: 'k2' });
  const page = await gateway.devices({ online: false, tags: { site: 'berlin', model: 'k2' } });
  assert.deepEqual(page.devices.map((d) => d.id), ['js-tag-1']);
  await assert.rejects(gateway.setTags('js-tag-1', { 'bad key': 'x' }), (e) => e instanceof DeviceGateError && e.code === 'invalid_tags' && e.status === 400);
});
