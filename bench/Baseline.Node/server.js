// The load tool's Node baseline (bench/README.md): bench/Baseline's routes and fixed shape on Node's http server
// and the ws package, no auth, no queues, no metrics, so compare can hold DeviceGate against it in the same run:
// - one read loop per device (ws's own), no per-message deflate;
// - one send at a time per device (a promise chain around ws.send's callback);
// - a targeted send awaits that device's send, then answers 202;
// - a broadcast starts every device's send, awaits them all, then answers 200.
// Prints "Now listening on: http://127.0.0.1:<port>" like ASP.NET Core, which is how the load tool finds the port.
import http from 'node:http';
import { WebSocketServer } from 'ws';

const urls = process.argv.indexOf('--urls');
const port = urls >= 0 ? Number(new URL(process.argv[urls + 1]).port) : 0;
const devices = new Map();
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 1024 * 1024 });

class Device {
  constructor(socket) {
    this.socket = socket;
    this.tail = Promise.resolve();
  }

  send(payload, binary) {
    const next = this.tail.then(() => new Promise((resolve) => this.socket.send(payload, { binary }, () => resolve())));
    this.tail = next;
    return next;
  }
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function answer(res, status, body) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, body === undefined ? {} : { 'content-type': 'application/json' });
  res.end(text);
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/ws' || url.pathname === '/ws/echo') return answer(res, 426);
  if (req.method !== 'POST') return answer(res, 404);
  const binary = (req.headers['content-type'] ?? '').toLowerCase().startsWith('application/octet-stream');
  const target = /^\/api\/devices\/([^/]+)\/messages$/.exec(url.pathname);
  if (target) {
    const device = devices.get(decodeURIComponent(target[1]));
    if (!device) return answer(res, 404);
    const payload = await readBody(req);
    await device.send(payload, binary);
    return answer(res, 202);
  }
  if (url.pathname === '/api/broadcast') {
    const payload = await readBody(req);
    const all = [...devices.values()];
    await Promise.all(all.map((d) => d.send(payload, binary)));
    return answer(res, 200, { recipients: all.length });
  }
  return answer(res, 404);
});
server.keepAliveTimeout = 120_000;

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://localhost');
  const deviceId = url.searchParams.get('deviceId');
  if (url.pathname === '/ws' && !deviceId) {
    socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  if (url.pathname !== '/ws' && url.pathname !== '/ws/echo') {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    if (url.pathname === '/ws/echo') {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      return;
    }
    const device = new Device(ws);
    devices.set(deviceId, device);
    ws.on('close', () => {
      if (devices.get(deviceId) === device) devices.delete(deviceId);
    });
    ws.on('error', () => {});
  });
});

server.listen(port, '127.0.0.1', () => {
  console.log(`Now listening on: http://127.0.0.1:${server.address().port}`);
});
