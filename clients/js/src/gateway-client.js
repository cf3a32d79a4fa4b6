import { DeviceGateError } from './errors.js';

/**
 * @typedef {string | Uint8Array | ArrayBuffer | object | number | boolean | null} MessageBody
 * A string goes as `text/plain`, bytes as `application/octet-stream` (binary), anything else as JSON.
 */

/**
 * @typedef {object} GatewayEvent One event from `/api/events`.
 * @property {number} seq Its number; increases by one per event (across the cluster in cluster mode).
 * @property {'connected' | 'disconnected' | 'message' | 'acked' | 'expired' | 'reset' | string} type
 * @property {string} [device]
 * @property {string} [at] ISO 8601 UTC.
 * @property {string} [node]
 * @property {unknown} [data]
 * @property {string} [dataBase64]
 * @property {string} [id] The message id of `acked`/`expired`.
 * @property {number} [code] The close code of `disconnected`.
 * @property {string} [reason]
 */

/**
 * @typedef {object} GatewayClientOptions
 * @property {string} url The gateway's HTTP address, e.g. `http://127.0.0.1:8080`.
 * @property {string} apiKey A backend API key (`DeviceGate:Auth:ApiKeys`, or the generated `data/api-key`).
 * @property {typeof fetch} [fetch] A fetch implementation (default: the global one).
 */

/**
 * The backend side of DeviceGate's HTTP API for Node (18+) and browsers: send, broadcast, groups, rpc, message
 * status and the event stream. Every error answer becomes a {@link DeviceGateError} whose `code` is the problem type.
 */
export class GatewayClient {
  #base;
  #apiKey;
  #fetch;

  /** @param {GatewayClientOptions} options */
  constructor(options) {
    if (!options?.url || !options.apiKey) throw new TypeError('GatewayClient: options.url and options.apiKey are required');
    this.#base = options.url.replace(/\/+$/, '');
    this.#apiKey = options.apiKey;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /**
   * Sends a message to one device. With `ttl` (seconds) it is stored first and delivered when the device connects.
   * @param {string} deviceId
   * @param {MessageBody} body
   * @param {{ ttl?: number, idempotencyKey?: string }} [options]
   * @returns {Promise<{ id: string, status: 'sent' | 'queued' }>}
   */
  send(deviceId, body, options = {}) {
    const headers = options.idempotencyKey ? { 'Idempotency-Key': options.idempotencyKey } : undefined;
    return this.#json('POST', `/api/devices/${seg(deviceId)}/messages${ttlQuery(options.ttl)}`, body, headers);
  }

  /**
   * Sends many messages in one request (`POST /api/messages/batch`, at most `DeviceGate:Limits:MaxBatchItems`, 1,000
   * by default). Each item carries exactly one of `text` (a string), `data` (any JSON) or `bytes` (binary).
   * Resolves with one result per item, in order: `{ id, status }`, or a problem (`{ type, title, status, detail }`)
   * for an item that could not be sent; one failing item costs only itself.
   * @param {Array<{ device: string, text?: string, data?: unknown, bytes?: Uint8Array, ttl?: number, idempotencyKey?: string }>} items
   * @returns {Promise<{ results: Array<{ id: string, status: 'sent' | 'queued' } | { type: string, title: string, status: number, detail?: string }>, sent: number, queued: number, failed: number }>}
   */
  sendBatch(items) {
    const body = items.map(({ bytes, ...rest }) => (bytes ? { ...rest, dataBase64: toBase64(bytes) } : rest));
    return this.#json('POST', '/api/messages/batch', body);
  }

  /**
   * Sends to every connected device (not stored).
   * @param {MessageBody} body
   * @returns {Promise<{ recipients: number, queued: number }>}
   */
  broadcast(body) {
    return this.#json('POST', '/api/broadcast', body);
  }

  /**
   * Sends to every member of a group; with `ttl`, offline members get it when they connect.
   * @param {string} group
   * @param {MessageBody} body
   * @param {{ ttl?: number }} [options]
   * @returns {Promise<{ recipients: number, queued: number }>}
   */
  sendToGroup(group, body, options = {}) {
    return this.#json('POST', `/api/groups/${seg(group)}/messages${ttlQuery(options.ttl)}`, body);
  }

  /**
   * Asks a connected envelope device and waits for its reply's data. Rejects with code `device_error` (the device
   * answered with an error; see `problem`), `timeout`-like 504, `not_connected` (404) or 409 for a raw device.
   * @param {string} deviceId
   * @param {MessageBody} body
   * @param {{ timeout?: number }} [options] seconds (default 10 on the gateway, at most 60)
   * @returns {Promise<unknown>}
   */
  rpc(deviceId, body, options = {}) {
    const q = options.timeout !== undefined ? `?timeout=${encodeURIComponent(String(options.timeout))}` : '';
    return this.#json('POST', `/api/devices/${seg(deviceId)}/rpc${q}`, body);
  }

  /**
   * @param {string} group
   * @param {string} deviceId
   * @returns {Promise<void>}
   */
  async addToGroup(group, deviceId) {
    await this.#call('PUT', `/api/groups/${seg(group)}/devices/${seg(deviceId)}`);
  }

  /**
   * @param {string} group
   * @param {string} deviceId
   * @returns {Promise<void>}
   */
  async removeFromGroup(group, deviceId) {
    await this.#call('DELETE', `/api/groups/${seg(group)}/devices/${seg(deviceId)}`);
  }

  /**
   * @param {string} group
   * @returns {Promise<{ group: string, devices: string[] }>}
   */
  group(group) {
    return this.#json('GET', `/api/groups/${seg(group)}`);
  }

  /**
   * The device's state document: desired, reported, delta, their versions and when each changed.
   * @param {string} deviceId
   * @returns {Promise<any>}
   */
  getState(deviceId) {
    return this.#json('GET', `/api/devices/${seg(deviceId)}/state`);
  }

  /**
   * Merges `patch` (a JSON merge patch: members set, `null` removes) into the desired state; returns the document.
   * With `ifMatch` it is written only if desired is still at that version (else a `DeviceGateError` with code
   * `version_mismatch`, status 412).
   * @param {string} deviceId
   * @param {Record<string, unknown>} patch
   * @param {{ ifMatch?: number }} [options]
   * @returns {Promise<any>}
   */
  patchDesired(deviceId, patch, options = {}) {
    return this.#json('PATCH', `/api/devices/${seg(deviceId)}/state/desired`, patch, ifMatchHeader(options.ifMatch));
  }

  /**
   * Merges `patch` into the reported state (for a backend reporting on a device's behalf); returns the document.
   * @param {string} deviceId
   * @param {Record<string, unknown>} patch
   * @param {{ ifMatch?: number }} [options]
   * @returns {Promise<any>}
   */
  patchReported(deviceId, patch, options = {}) {
    return this.#json('PATCH', `/api/devices/${seg(deviceId)}/state/reported`, patch, ifMatchHeader(options.ifMatch));
  }

  /**
   * @param {string} deviceId
   * @returns {Promise<{ id: string, online: boolean, connectedAt: string | null, lastSeen: string | null, node: string, groups: string[], queued: number, tags: Record<string, string> }>}
   */
  device(deviceId) {
    return this.#json('GET', `/api/devices/${seg(deviceId)}`);
  }

  /**
   * One page of devices (connected ones, or every known one with `online: false`); with `tags`, only those having
   * every one of these tags (exact values).
   * @param {{ limit?: number, after?: string, search?: string, online?: boolean, tags?: Record<string, string> }} [options]
   * @returns {Promise<{ devices: Array<{ id: string, online: boolean, connectedAt: string | null, lastSeen: string | null, node: string }>, next: string | null }>}
   */
  devices(options = {}) {
    const q = new URLSearchParams();
    const { tags, ...rest } = options;
    for (const [k, v] of Object.entries(rest)) if (v !== undefined) q.set(k, String(v));
    for (const [k, v] of Object.entries(tags ?? {})) q.append('tag', `${k}:${v}`);
    const s = q.toString();
    return this.#json('GET', `/api/devices${s ? `?${s}` : ''}`);
  }

  /**
   * Replaces the device's tags (`{}` removes them); a refused set rejects with code `invalid_tags` (status 400).
   * @param {string} deviceId
   * @param {Record<string, string>} tags
   * @returns {Promise<void>}
   */
  async setTags(deviceId, tags) {
    await this.#call('PUT', `/api/devices/${seg(deviceId)}/tags`, tags);
  }

  /**
   * A message's status and history.
   * @param {string} messageId
   * @returns {Promise<{ id: string, device: string, status: string, createdAt: string, updatedAt: string, attempts: number, history: Array<{ status: string, at: string }> }>}
   */
  message(messageId) {
    return this.#json('GET', `/api/messages/${seg(messageId)}`);
  }

  /**
   * Cancels a queued message (code `already_sent` once it went out).
   * @param {string} messageId
   * @returns {Promise<void>}
   */
  async cancelMessage(messageId) {
    await this.#call('DELETE', `/api/messages/${seg(messageId)}`);
  }

  /**
   * Closes a device's connection with 4001 (it reconnects with backoff).
   * @param {string} deviceId
   * @returns {Promise<void>}
   */
  async disconnect(deviceId) {
    await this.#call('DELETE', `/api/devices/${seg(deviceId)}/connection`);
  }

  /**
   * Refuses every token of the device issued until now and closes it with `1008 token_revoked`.
   * @param {string} deviceId
   * @returns {Promise<void>}
   */
  async revokeTokens(deviceId) {
    await this.#call('POST', `/api/devices/${seg(deviceId)}/revoke-tokens`);
  }

  /**
   * Counters per node (every live node in a cluster).
   * @returns {Promise<{ nodes: Array<{ node: string, connectedDevices: number, messagesIn: number, messagesOut: number, handshakesRefused: number, outboxDepth: number, at: string }> }>}
   */
  stats() {
    return this.#json('GET', '/api/stats');
  }

  /**
   * The event stream as an async iterable. It reconnects after a dropped connection and resumes with
   * `Last-Event-ID` (a `reset` event says some events were no longer buffered). Stop it with `signal` or `break`.
   * An entry that is not valid JSON is passed to `onMalformed` (by default a `console.warn`) and skipped.
   * @param {{ types?: string[] | string, device?: string, lastEventId?: number, signal?: AbortSignal, retryMs?: number, onMalformed?: (data: string, error: Error) => void }} [options]
   * @returns {AsyncGenerator<GatewayEvent, void, undefined>}
   */
  async *events(options = {}) {
    let lastId = options.lastEventId;
    const q = new URLSearchParams();
    if (options.types) q.set('types', Array.isArray(options.types) ? options.types.join(',') : options.types);
    if (options.device) q.set('device', options.device);
    const path = `/api/events${q.size ? `?${q}` : ''}`;
    let retryMs = options.retryMs ?? 1_000;
    while (!options.signal?.aborted) {
      /** @type {Record<string, string>} */
      const headers = { Accept: 'text/event-stream' };
      if (lastId !== undefined) headers['Last-Event-ID'] = String(lastId);
      /** @type {Response | undefined} */
      let response;
      try {
        response = await this.#fetch(this.#base + path, { headers: this.#headers(headers), signal: options.signal });
      } catch (e) {
        if (options.signal?.aborted) return;
        await delay(retryMs, options.signal);
        continue;
      }
      if (!response.ok) throw await problem(response);
      try {
        for await (const frame of sseFrames(/** @type {ReadableStream<Uint8Array>} */ (response.body))) {
          if (frame.retry !== undefined) retryMs = frame.retry;
          if (frame.id !== undefined) lastId = Number(frame.id);
          if (frame.data === undefined) continue;
          // An entry that is not a readable event is reported and skipped; the stream and its resume position go on.
          let event;
          try {
            event = JSON.parse(frame.data);
          } catch (e) {
            (options.onMalformed ?? warnMalformed)(frame.data, /** @type {Error} */ (e));
            continue;
          }
          yield event;
        }
      } catch (e) {
        if (options.signal?.aborted) return;
      }
      await delay(retryMs, options.signal);
    }
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {MessageBody} [body]
   * @param {Record<string, string>} [headers]
   * @returns {Promise<any>}
   */
  async #json(method, path, body, headers) {
    const response = await this.#call(method, path, body, headers);
    const text = await response.text();
    return text === '' ? null : JSON.parse(text);
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {MessageBody} [body]
   * @param {Record<string, string>} [headers]
   */
  async #call(method, path, body, headers = {}) {
    /** @type {RequestInit} */
    const init = { method, headers: this.#headers(headers) };
    if (body !== undefined) {
      const [contentType, payload] = encodeBody(body);
      /** @type {Record<string, string>} */ (init.headers)['Content-Type'] = contentType;
      init.body = payload;
    }
    const response = await this.#fetch(this.#base + path, init);
    if (!response.ok) throw await problem(response);
    return response;
  }

  /** @param {Record<string, string>} headers */
  #headers(headers) {
    return { ...headers, Authorization: `Bearer ${this.#apiKey}` };
  }
}

/**
 * @param {MessageBody} body
 * @returns {[string, BodyInit]}
 */
function encodeBody(body) {
  if (typeof body === 'string') return ['text/plain; charset=utf-8', body];
  if (body instanceof Uint8Array) return ['application/octet-stream', /** @type {BodyInit} */ (/** @type {unknown} */ (body))];
  if (body instanceof ArrayBuffer) return ['application/octet-stream', body];
  return ['application/json', JSON.stringify(body)];
}

/** @param {Response} response */
async function problem(response) {
  const text = await response.text().catch(() => '');
  /** @type {any} */
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    // not problem details
  }
  const code = body?.type ?? `http_${response.status}`;
  const message = body?.detail ?? body?.title ?? (text || response.statusText);
  return new DeviceGateError(code, `${response.status} ${message}`, { status: response.status, problem: body });
}

/**
 * Splits a text/event-stream body into frames (the fields of one event).
 * @param {ReadableStream<Uint8Array>} stream
 * @returns {AsyncGenerator<{ id?: string, event?: string, data?: string, retry?: number }>}
 */
export async function* sseFrames(stream) {
  const decoder = new TextDecoder();
  let buffer = '';
  /** @type {{ id?: string, event?: string, data?: string, retry?: number }} */
  let frame = {};
  const reader = stream.getReader();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let newline;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith('\r\n', newline) ? 2 : 1));
        if (line === '') {
          if (frame.data !== undefined || frame.id !== undefined) yield frame;
          frame = {};
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') frame.data = frame.data === undefined ? value : `${frame.data}\n${value}`;
        else if (field === 'id') frame.id = value;
        else if (field === 'event') frame.event = value;
        else if (field === 'retry' && /^\d+$/.test(value)) frame.retry = Number(value);
      }
    }
  } finally {
    // Also when the consumer stops early: cancelling the body closes the HTTP connection.
    await reader.cancel().catch(() => {});
  }
}

/** @param {Uint8Array} bytes */
function toBase64(bytes) {
  let text = '';
  for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
  return btoa(text);
}

/** @param {number | undefined} ttl */
function ttlQuery(ttl) {
  return ttl ? `?ttl=${encodeURIComponent(String(ttl))}` : '';
}

/** @param {string} s */
function seg(s) {
  return encodeURIComponent(s);
}

/**
 * @param {number} ms
 * @param {AbortSignal} [signal]
 * @returns {Promise<void>}
 */
function delay(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/** @param {string} data @param {Error} error */
function warnMalformed(data, error) {
  console.warn(`DeviceGate: skipped an event stream entry that is not JSON (${data.length} characters): ${error.message}`);
}

/**
 * @param {number | undefined} version
 * @returns {Record<string, string>}
 */
function ifMatchHeader(version) {
  return version === undefined ? {} : { 'If-Match': `"${version}"` };
}
