// Serves the browser device page and the JavaScript SDK (clients/js/src, as /sdk/) on 127.0.0.1. No dependencies.
//   node examples/browser/serve.mjs [port]      (default 5173; 0 picks a free one)
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, resolve, dirname, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const roots = { '/sdk/': resolve(here, '../../clients/js/src'), '/': here };
const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8' };

/** Starts the server; resolves with its address once it listens. */
export function serve(port = 5173, host = '127.0.0.1') {
  const server = createServer(async (req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const prefix = path.startsWith('/sdk/') ? '/sdk/' : '/';
    const root = roots[prefix];
    const file = normalize(join(root, path.slice(prefix.length) || 'index.html'));
    const type = types[extname(file)];
    if (!file.startsWith(root + sep) || !type || file.endsWith('serve.mjs')) {
      res.writeHead(404).end('not found');
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-store' }).end(body);
    } catch {
      res.writeHead(404).end('not found');
    }
  });
  return new Promise((resolvePromise) => server.listen(port, host, () => {
    const address = /** @type {import('node:net').AddressInfo} */ (server.address());
    resolvePromise({ url: `http://${host}:${address.port}`, close: () => new Promise((r) => server.close(r)) });
  }));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { url } = await serve(Number(process.argv[2] ?? 5173));
  console.log(`Browser device page: ${url}/`);
  console.log('The gateway must allow this origin: serve --DeviceGate:WebSockets:AllowedOrigins:0=' + url);
}
