// Test helpers: the real DeviceGate server as a child process on 127.0.0.1, tokens, and bounded waits.
import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
/** Built by `npm test` (dotnet build src/DeviceGate) before the tests run; DEVICEGATE_DLL overrides it. */
export const dll = process.env.DEVICEGATE_DLL ?? join(repo, 'src/DeviceGate/bin/Debug/net10.0/DeviceGate.dll');
export const secret = randomBytes(32).toString('hex');
export const apiKey = `test-key-${randomBytes(16).toString('hex')}`;
export const WAIT_MS = 20_000;

/** A temporary data folder, removed when the test ends. */
export function tempDir(t) {
  const dir = mkdtempSync(join(tmpdir(), 'devicegate-js-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Starts `serve` in `dataDir` and waits (bounded) until it listens. Stopped when the test ends.
 * @param {import('node:test').TestContext} t
 * @param {{ dataDir?: string, port?: number, args?: string[] }} [options]
 */
export async function startGateway(t, options = {}) {
  if (!existsSync(dll)) throw new Error(`${dll} is missing: run "dotnet build src/DeviceGate" (npm test does)`);
  const dataDir = options.dataDir ?? tempDir(t);
  const args = [dll, 'serve', '--urls', `http://127.0.0.1:${options.port ?? 0}`,
    `--DeviceGate:Auth:TokenSecret=${secret}`, `--DeviceGate:Auth:ApiKeys:0=${apiKey}`, ...(options.args ?? [])];
  const child = spawn('dotnet', args, { cwd: dataDir, env: { ...process.env, DOTNET_NOLOGO: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const exited = new Promise((r) => child.once('exit', r));
  const url = await new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`DeviceGate did not start within ${WAIT_MS} ms:\n${output}`)), WAIT_MS);
    const onData = (/** @type {Buffer} */ chunk) => {
      output += chunk.toString();
      const m = /Now listening on: (http:\/\/[^\s]+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolvePromise(m[1]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`DeviceGate exited with ${code}:\n${output}`));
    });
  });
  const gateway = {
    url,
    port: Number(new URL(url).port),
    dataDir,
    output: () => output,
    /** SIGKILL: no drain, no flush. */
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await withTimeout(exited, WAIT_MS, 'DeviceGate did not stop');
    },
  };
  t.after(() => gateway.kill());
  return gateway;
}

/**
 * An HS256 device token, as `devicegate token` mints them.
 * @param {string} deviceId
 * @param {{ ttlSeconds?: number, claims?: Record<string, unknown> }} [options]
 */
export function mintToken(deviceId, options = {}) {
  const now = Date.now() / 1000;
  const payload = { sub: deviceId, iat: now, ...(options.ttlSeconds !== undefined ? { exp: Math.floor(now + options.ttlSeconds) } : {}), ...options.claims };
  const b64 = (/** @type {object} */ o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const body = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(payload)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

/** Calls the HTTP API with the test key. */
export async function api(gateway, method, path, body, headers = {}) {
  const init = { method, headers: { Authorization: `Bearer ${apiKey}`, ...headers } };
  if (body !== undefined) {
    init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
    init.headers['Content-Type'] ??= typeof body === 'string' ? 'text/plain' : body instanceof Uint8Array ? 'application/octet-stream' : 'application/json';
  }
  const response = await fetch(gateway.url + path, init);
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text && response.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text };
}

/** Rejects when `promise` takes longer than `ms`. */
export function withTimeout(promise, ms = WAIT_MS, what = 'timed out') {
  let timer;
  return Promise.race([promise, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} (${ms} ms)`)), ms)))])
    .finally(() => clearTimeout(timer));
}

/** Polls `check` until it returns a truthy value, bounded. */
export async function eventually(check, ms = WAIT_MS, what = 'condition never held') {
  const deadline = Date.now() + ms;
  while (true) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(what);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A queue of values pushed by callbacks, awaited one at a time with a bound. */
export class Inbox {
  #items = [];
  #waiters = [];
  push(item) {
    const w = this.#waiters.shift();
    if (w) w(item);
    else this.#items.push(item);
  }
  next(ms = WAIT_MS, what = 'nothing arrived') {
    if (this.#items.length) return Promise.resolve(this.#items.shift());
    return withTimeout(new Promise((r) => this.#waiters.push(r)), ms, what);
  }
  get length() {
    return this.#items.length;
  }
}
