// The browser device page: DeviceClient from the SDK, wired to a form. Settings may also come in the URL's hash
// (#gateway=...&device=...&token=...), which connects at once.
import { DeviceClient, RpcError } from './sdk/index.js';

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));
const connectForm = /** @type {HTMLFormElement} */ ($('connect'));
const telemetryForm = /** @type {HTMLFormElement} */ ($('telemetry'));
/** @type {DeviceClient | null} */
let client = null;

function log(text) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $('log').prepend(li);
}

function show(state) {
  $('state').textContent = state;
  $('state').dataset.state = state;
  const live = state === 'connected';
  /** @type {HTMLButtonElement} */ (telemetryForm.querySelector('button')).disabled = !live;
  /** @type {HTMLButtonElement} */ ($('disconnect')).disabled = !client || state === 'closed' || state === 'replaced';
  const last = client?.lastClose;
  $('close').textContent = last && state !== 'connected' ? `(last close: ${last.code} ${last.reason})` : '';
}

async function connect(gateway, device, token) {
  await client?.close();
  client = new DeviceClient({
    url: gateway,
    deviceId: device,
    token: token || undefined,
    onStateChange: (state) => {
      show(state);
      log(`state: ${state}`);
    },
    onMessage: (m) => {
      const li = document.createElement('li');
      const body = m.binary ? `${m.binary.length} bytes` : JSON.stringify(m.data);
      li.textContent = `${m.from}${m.group ? ` (group ${m.group})` : ''}: ${body}`;
      li.dataset.id = m.id;
      $('messages').prepend(li);
    },
    onRpc: (data) => {
      const cmd = /** @type {any} */ (data)?.cmd;
      log(`rpc: ${JSON.stringify(data)}`);
      if (cmd === 'ping') return { pong: true, userAgent: navigator.userAgent, at: new Date().toISOString() };
      if (cmd === 'title') return { title: document.title };
      throw new RpcError('unknown_command', `This page does not know ${JSON.stringify(cmd)}`);
    },
    onError: (e) => log(`error: ${e.code}: ${e.message}`),
  });
  show(client.state);
  try {
    await client.connect();
  } catch (e) {
    log(`connect failed: ${/** @type {Error} */ (e).message}`);
  }
}

connectForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const f = new FormData(connectForm);
  void connect(String(f.get('gateway')), String(f.get('device')), String(f.get('token') ?? ''));
});

$('disconnect').addEventListener('click', () => void client?.close());

telemetryForm.addEventListener('submit', async (e) => {
  e.preventDefault();
  const raw = String(new FormData(telemetryForm).get('data'));
  let data;
  try {
    data = JSON.parse(raw);
  } catch {
    data = raw;
  }
  try {
    const r = await client?.send('server', data);
    $('sent').textContent = r ? `sent ${r.id}` : '';
  } catch (err) {
    $('sent').textContent = `${/** @type {any} */ (err).code}: ${/** @type {Error} */ (err).message}`;
  }
});

const hash = new URLSearchParams(location.hash.slice(1));
for (const name of ['gateway', 'device', 'token']) {
  const value = hash.get(name);
  if (value) /** @type {HTMLInputElement} */ (connectForm.elements.namedItem(name)).value = value;
}
if (hash.get('device')) connectForm.requestSubmit();
