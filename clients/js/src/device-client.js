import { backoffDelay, closeRule } from './backoff.js';
import { DeviceGateError, RpcError } from './errors.js';

/** The envelope subprotocol this client speaks (docs/protocol.md, "Envelope mode"). */
export const SUBPROTOCOL = 'devicegate.v1.json';

const OPEN = 1;
const noop = () => {};

/**
 * @typedef {'idle' | 'connecting' | 'connected' | 'reconnecting' | 'replaced' | 'closed'} DeviceClientState
 * `replaced`: closed with 4000 because another connection took this device id over; the client stops.
 * `closed`: `close()` was called, or the first connection was refused (Node only: a browser cannot see why).
 */

/**
 * @typedef {object} DeviceMessage A message delivered to this device.
 * @property {string} id The message id; a redelivery carries the same one (the client drops duplicates).
 * @property {string} from A device id, or `server`.
 * @property {string} [group] The group it was published to.
 * @property {unknown} [data] The JSON data, when it was sent as JSON or text.
 * @property {Uint8Array} [binary] The bytes, when it was sent as binary (`dataBase64` on the wire).
 */

/**
 * @typedef {object} DesiredState The device's desired state, as the gateway delivers it (a `state` message).
 * @property {number} version The desired version; acking makes it the document's `ackedVersion`.
 * @property {Record<string, unknown>} desired The whole desired document.
 * @property {Record<string, unknown>} delta The members of desired that differ from reported, when this version was written.
 * @property {string} messageId The state message's id.
 */

/**
 * @typedef {object} RpcRequest
 * @property {string} id The rpc id.
 * @property {unknown} data The request's JSON data.
 */

/**
 * @typedef {object} SentResult The gateway's answer to a `send` or `publish`.
 * @property {string} id The message id.
 * @property {'sent' | 'queued'} status `queued` when it was stored for an offline target (ttl > 0).
 */

/**
 * @typedef {object} Logger
 * @property {(message: string, ...args: unknown[]) => void} debug
 * @property {(message: string, ...args: unknown[]) => void} warn
 */

/**
 * @typedef {object} DeviceClientOptions
 * @property {string} [url] The gateway, e.g. `ws://127.0.0.1:8080` or `https://gw.example.com` (http becomes ws).
 *   In a browser it defaults to the page's own origin.
 * @property {string} deviceId This device's id.
 * @property {string | (() => string | Promise<string>)} [token] A device token, or a function returning one. The
 *   function runs before every connection attempt (so after `1008 token_expired` it can fetch a fresh token).
 *   Omit it only when the gateway allows anonymous devices.
 * @property {any} [WebSocket] The WebSocket implementation: defaults to `globalThis.WebSocket` (browsers, Node 22+).
 *   On Node 20 pass the `ws` package's default export. An implementation with Node-style `.on()` (like `ws`) gets the
 *   token in the `Authorization` header and reports the handshake's HTTP status and `Retry-After`; a browser-style one
 *   gets the token as `access_token` in the query string and falls back to plain jittered backoff.
 * @property {(message: DeviceMessage) => unknown} [onMessage] Handles a message. It is acked once this returns (or
 *   its promise resolves); if it throws, the message stays unacked and the gateway sends it again later.
 *   Messages are handed over one at a time, in order.
 * @property {(state: DesiredState) => unknown} [onDesiredState] Handles the device's desired state: sent on connect
 *   when the device has not acked the latest version, and on every change while connected (only the latest version
 *   is delivered). Acked once this returns (or its promise resolves), like a message; if it throws, it stays unacked
 *   and comes again. Without a handler, state messages are acked unseen. Handed over in order with messages.
 * @property {(data: unknown, request: RpcRequest) => unknown} [onRpc] Answers an rpc: the (awaited) return value is
 *   the reply's data. Throw an {@link RpcError} to answer with an error code.
 * @property {(state: DeviceClientState, previous: DeviceClientState) => void} [onStateChange]
 * @property {(error: DeviceGateError) => void} [onError] Errors nobody awaits: an `error` envelope without a
 *   pending call, a close the application should know about (`replaced`, `too_big`, `rate_limited`, `policy`),
 *   a failing message handler or token provider.
 * @property {number} [initialBackoffMs] First reconnect delay bound (default 500); doubled per failed attempt.
 * @property {number} [maxBackoffMs] Longest reconnect delay (default 30,000).
 * @property {number} [dedupeWindow] How many handled message ids are remembered to drop redeliveries (default 10,000).
 * @property {number} [requestTimeoutMs] How long `send`/`publish` wait for the gateway's answer (default 10,000).
 * @property {Logger} [logger] Where the client logs (default: nowhere). `console` works.
 */

/**
 * A device connected to DeviceGate in envelope mode (`devicegate.v1.json`), in browsers and in Node.
 * It reconnects by itself with exponential backoff and full jitter, follows the close-code rules of docs/protocol.md
 * (a `4000` takeover is not fought), acks each message after its handler returns, never hands a redelivered id to
 * the handler twice, and answers rpcs with the rpc handler's result.
 */
export class DeviceClient {
  /** @type {Required<Pick<DeviceClientOptions, 'deviceId' | 'initialBackoffMs' | 'maxBackoffMs' | 'dedupeWindow' | 'requestTimeoutMs'>> & DeviceClientOptions} */
  #options;
  /** @type {any} */
  #WebSocket;
  #nodeStyle;
  /** @type {any} */
  #socket = null;
  /** @type {DeviceClientState} */
  #state = 'idle';
  #attempt = 0;
  #everConnected = false;
  #stopped = false;
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  #retryTimer;
  /** @type {Set<string>} insertion-ordered, so the oldest id is the first one */
  #seen = new Set();
  /** @type {Map<string, { resolve: (r: SentResult) => void, reject: (e: Error) => void, timer: ReturnType<typeof setTimeout> }>} */
  #pending = new Map();
  #refSeq = 0;
  /** @type {Promise<void>} messages are handled one at a time, in arrival order */
  #inbox = Promise.resolve();
  /** @type {{ promise: Promise<void>, resolve: () => void, reject: (e: Error) => void } | null} */
  #firstOpen = null;
  /** @type {(() => void) | null} */
  #onSocketClosed = null;
  /** @type {{ code: number, reason: string } | null} */
  #lastClose = null;

  /** @param {DeviceClientOptions} options */
  constructor(options) {
    if (!options || typeof options.deviceId !== 'string' || options.deviceId === '') {
      throw new TypeError('DeviceClient: options.deviceId is required');
    }
    const WebSocketImpl = options.WebSocket ?? /** @type {any} */ (globalThis).WebSocket;
    if (typeof WebSocketImpl !== 'function') {
      throw new TypeError("DeviceClient: no WebSocket implementation. On Node 20 pass { WebSocket } from the 'ws' package.");
    }
    const url = options.url ?? /** @type {any} */ (globalThis).location?.origin;
    if (!url) throw new TypeError('DeviceClient: options.url is required outside a browser page');
    this.#options = {
      initialBackoffMs: 500,
      maxBackoffMs: 30_000,
      dedupeWindow: 10_000,
      requestTimeoutMs: 10_000,
      ...options,
      url,
    };
    this.#WebSocket = WebSocketImpl;
    this.#nodeStyle = typeof WebSocketImpl.prototype?.on === 'function';
    /** @type {DeviceClientOptions['onMessage']} */
    this.onMessage = options.onMessage;
    /** @type {DeviceClientOptions['onRpc']} */
    this.onRpc = options.onRpc;
    /** @type {DeviceClientOptions['onDesiredState']} */
    this.onDesiredState = options.onDesiredState;
    /** @type {DeviceClientOptions['onStateChange']} */
    this.onStateChange = options.onStateChange;
    /** @type {DeviceClientOptions['onError']} */
    this.onError = options.onError;
  }

  /** The device id. */
  get deviceId() {
    return this.#options.deviceId;
  }

  /** The connection state. @returns {DeviceClientState} */
  get state() {
    return this.#state;
  }

  /** The close code and reason of the last connection that was open, or null. */
  get lastClose() {
    return this.#lastClose;
  }

  /**
   * Starts connecting. Resolves once the first connection is open; rejects when the gateway refuses it with 400,
   * 401 or 403 (Node-style implementations only: a browser cannot see the status and keeps retrying), or when
   * `close()` is called first. After that, the client reconnects by itself until `close()`.
   * @returns {Promise<void>}
   */
  connect() {
    if (this.#firstOpen) return this.#firstOpen.promise;
    if (this.#stopped) return Promise.reject(new DeviceGateError('closed', 'DeviceClient was closed'));
    /** @type {any} */
    const d = {};
    d.promise = new Promise((resolve, reject) => {
      d.resolve = resolve;
      d.reject = reject;
    });
    d.promise.catch(noop); // reported through connect()'s caller; never an unhandled rejection
    this.#firstOpen = d;
    void this.#open();
    return d.promise;
  }

  /**
   * Sends `data` (any JSON value) to another device, or to `server` (the backend's event stream).
   * Resolves with the message id once the gateway accepted it; rejects with a {@link DeviceGateError}
   * (`offline`, `forbidden`, `outbox_full`, ..., or `not_connected`/`disconnected`/`timeout`).
   * @param {string} to
   * @param {unknown} data
   * @param {{ ttl?: number }} [options] `ttl` in seconds: store it for an offline target (status `queued`).
   * @returns {Promise<SentResult>}
   */
  send(to, data, options = {}) {
    return this.#request({ type: 'send', to, data, ...(options.ttl ? { ttl: options.ttl } : {}) });
  }

  /**
   * Reports this device's own state: `patch` (a JSON merge patch: members set, `null` removes) is merged into its
   * reported state. Resolves with the reported version after it; rejects with a `DeviceGateError`
   * (`invalid_field`, `state_too_large`, `unavailable`, or `not_connected`/`disconnected`/`timeout`).
   * @param {Record<string, unknown>} patch
   * @returns {Promise<{ version: number }>}
   */
  reportState(patch) {
    return /** @type {Promise<{ version: number }>} */ (/** @type {unknown} */ (this.#request({ type: 'report', state: patch })));
  }

  /**
   * Publishes `data` to every other member of `group`.
   * @param {string} group
   * @param {unknown} data
   * @param {{ ttl?: number }} [options]
   * @returns {Promise<SentResult>}
   */
  publish(group, data, options = {}) {
    return this.#request({ type: 'publish', group, data, ...(options.ttl ? { ttl: options.ttl } : {}) });
  }

  /**
   * Joins a group. Envelopes are handled in order, so the next envelope already sees the membership.
   * A refusal (`forbidden`) arrives through `onError`.
   * @param {string} group
   * @returns {Promise<void>}
   */
  async join(group) {
    this.#writeOrThrow({ type: 'join', group });
  }

  /**
   * Leaves a group.
   * @param {string} group
   * @returns {Promise<void>}
   */
  async leave(group) {
    this.#writeOrThrow({ type: 'leave', group });
  }

  /**
   * Closes the connection with 1000 and stops reconnecting. Resolves once the socket is closed (at most ~5 s).
   * @returns {Promise<void>}
   */
  async close() {
    if (this.#stopped && this.#state === 'closed') return;
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    this.#firstOpen?.reject(new DeviceGateError('closed', 'DeviceClient was closed before it connected'));
    const socket = this.#socket;
    if (socket) {
      const closed = new Promise((resolve) => (this.#onSocketClosed = () => resolve(undefined)));
      try {
        socket.close(1000, 'bye');
      } catch {
        // already closing
      }
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      let timer;
      const timeout = new Promise((resolve) => (timer = setTimeout(resolve, 5_000)));
      await Promise.race([closed, timeout]);
      clearTimeout(timer);
      if (this.#socket === socket && typeof socket.terminate === 'function') socket.terminate();
    }
    this.#failPending('closed', 'DeviceClient was closed');
    this.#setState('closed');
  }

  async #open() {
    if (this.#stopped) return;
    this.#setState(this.#everConnected ? 'reconnecting' : 'connecting');
    /** @type {string | undefined} */
    let token;
    try {
      const t = this.#options.token;
      token = typeof t === 'function' ? await t() : t;
    } catch (e) {
      this.#report(new DeviceGateError('token_provider_failed', `The token provider failed: ${errorMessage(e)}`));
      this.#scheduleRetry(this.#nextBackoff());
      return;
    }
    if (this.#stopped) return;

    const handshake = { status: 0, retryAfterMs: 0 };
    let opened = false;
    /** @type {any} */
    let socket;
    try {
      const url = this.#endpoint(this.#nodeStyle ? undefined : token);
      socket = this.#nodeStyle
        ? new this.#WebSocket(url, [SUBPROTOCOL], token ? { headers: { Authorization: `Bearer ${token}` } } : {})
        : new this.#WebSocket(url, [SUBPROTOCOL]);
    } catch (e) {
      this.#report(new DeviceGateError('connect_failed', `Cannot open a WebSocket: ${errorMessage(e)}`));
      this.#scheduleRetry(this.#nextBackoff());
      return;
    }
    this.#socket = socket;
    if (this.#nodeStyle) {
      socket.on('unexpected-response', (/** @type {any} */ _req, /** @type {any} */ res) => {
        handshake.status = res.statusCode;
        handshake.retryAfterMs = retryAfterMs(res.headers?.['retry-after']);
        res.resume();
        socket.terminate();
      });
    }
    socket.onopen = () => {
      opened = true;
      this.#attempt = 0;
      this.#everConnected = true;
      this.#setState('connected');
      this.#firstOpen?.resolve();
    };
    socket.onmessage = (/** @type {{ data: unknown }} */ event) => this.#receive(socket, event.data);
    socket.onerror = (/** @type {any} */ event) => this.#options.logger?.debug('DeviceGate socket error', event?.message ?? '');
    socket.onclose = (/** @type {{ code: number, reason: string }} */ event) => this.#closed(socket, opened, event, handshake);
  }

  /**
   * @param {any} socket
   * @param {boolean} opened
   * @param {{ code: number, reason: string }} event
   * @param {{ status: number, retryAfterMs: number }} handshake
   */
  #closed(socket, opened, event, handshake) {
    if (this.#socket === socket) this.#socket = null;
    this.#failPending('disconnected', 'The connection closed before the gateway answered');
    this.#onSocketClosed?.();
    if (opened) this.#lastClose = { code: event.code, reason: String(event.reason ?? '') };
    if (this.#stopped) return;

    if (!opened) {
      const status = handshake.status;
      this.#options.logger?.debug(`DeviceGate refused the connection: ${status || 'no HTTP status'}`);
      if ((status === 400 || status === 401 || status === 403) && !this.#everConnected) {
        // Waiting does not fix these; the first connect() reports it. Later ones keep trying with fresh tokens.
        this.#stopped = true;
        this.#firstOpen?.reject(new DeviceGateError('refused', `DeviceGate refused the connection: HTTP ${status}`, { status }));
        this.#setState('closed');
        return;
      }
      this.#scheduleRetry(Math.max(this.#nextBackoff(), handshake.retryAfterMs));
      return;
    }

    const rule = closeRule(event.code, String(event.reason ?? ''));
    if (rule.report) {
      this.#report(new DeviceGateError(rule.report, `The gateway closed the connection: ${event.code} ${event.reason}`));
    }
    if (rule.action === 'stop') {
      this.#stopped = true;
      this.#setState('replaced');
      return;
    }
    if (rule.action === 'now') {
      this.#scheduleRetry(0);
      return;
    }
    const delay = this.#nextBackoff();
    this.#scheduleRetry(rule.action === 'long' ? Math.max(delay, rule.minMs ?? 0) : delay);
  }

  #nextBackoff() {
    this.#attempt++;
    return backoffDelay(this.#attempt, this.#options.initialBackoffMs, this.#options.maxBackoffMs);
  }

  /** @param {number} delayMs */
  #scheduleRetry(delayMs) {
    if (this.#stopped) return;
    this.#setState(this.#everConnected ? 'reconnecting' : 'connecting');
    this.#options.logger?.debug(`DeviceGate: reconnecting in ${delayMs} ms`);
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => void this.#open(), delayMs);
  }

  /**
   * @param {any} socket
   * @param {unknown} raw
   */
  #receive(socket, raw) {
    /** @type {any} */
    let envelope;
    try {
      envelope = JSON.parse(typeof raw === 'string' ? raw : new TextDecoder().decode(/** @type {any} */ (raw)));
    } catch {
      this.#options.logger?.warn('DeviceGate sent something that is not JSON; ignored');
      return;
    }
    switch (envelope?.type) {
      case 'message':
      case 'state':
        this.#inbox = this.#inbox.then(() => this.#handleMessage(socket, envelope));
        break;
      case 'rpc':
        void this.#answer(socket, envelope);
        break;
      case 'sent': {
        const p = this.#takePending(envelope.ref);
        p?.resolve({ id: envelope.id, status: envelope.status });
        break;
      }
      case 'reported': {
        const p = this.#takePending(envelope.ref);
        p?.resolve(/** @type {any} */ ({ version: envelope.version }));
        break;
      }
      case 'error': {
        const error = new DeviceGateError(envelope.code, envelope.message ?? envelope.code, { ref: envelope.ref });
        const p = this.#takePending(envelope.ref);
        if (p) p.reject(error);
        else this.#report(error);
        break;
      }
      default:
        this.#options.logger?.debug(`DeviceGate: unknown envelope type ${envelope?.type}; ignored`);
    }
  }

  /**
   * @param {any} socket
   * @param {any} envelope
   */
  async #handleMessage(socket, envelope) {
    const id = String(envelope.id);
    if (!this.#seen.has(id)) {
      try {
        if (envelope.type === 'state') {
          await this.onDesiredState?.({ version: envelope.version, desired: envelope.desired, delta: envelope.delta, messageId: id });
        } else {
          /** @type {DeviceMessage} */
          const message = { id, from: envelope.from };
          if (envelope.group !== undefined) message.group = envelope.group;
          if ('data' in envelope) message.data = envelope.data;
          if (typeof envelope.dataBase64 === 'string') message.binary = fromBase64(envelope.dataBase64);
          await this.onMessage?.(message);
        }
      } catch (e) {
        // Unacked: the gateway sends it again after its ack timeout (or on the next connection).
        this.#options.logger?.warn(`DeviceGate: message handler failed for ${id}; left unacked`, e);
        this.#report(new DeviceGateError('handler_failed', `The message handler failed for ${id}: ${errorMessage(e)}`));
        return;
      }
      this.#remember(id);
    }
    // Acked after the handler returned. A duplicate is acked again so the gateway stops resending it.
    this.#write(socket, { type: 'ack', id });
  }

  /**
   * @param {any} socket
   * @param {any} envelope
   */
  async #answer(socket, envelope) {
    /** @type {Record<string, unknown>} */
    let reply;
    try {
      const data = this.onRpc ? await this.onRpc(envelope.data, { id: envelope.id, data: envelope.data }) : null;
      reply = { type: 'reply', id: envelope.id, data: data === undefined ? null : data };
    } catch (e) {
      const code = e instanceof RpcError ? e.code : 'handler_failed';
      reply = { type: 'reply', id: envelope.id, error: { code, message: errorMessage(e) } };
    }
    this.#write(socket, reply);
  }

  /** @param {string} id */
  #remember(id) {
    this.#seen.add(id);
    while (this.#seen.size > this.#options.dedupeWindow) {
      const oldest = this.#seen.values().next().value;
      if (oldest === undefined) break;
      this.#seen.delete(oldest);
    }
  }

  /**
   * @param {Record<string, unknown>} envelope
   * @returns {Promise<SentResult>}
   */
  #request(envelope) {
    return new Promise((resolve, reject) => {
      const ref = `r${++this.#refSeq}`;
      try {
        this.#writeOrThrow({ ...envelope, ref });
      } catch (e) {
        reject(e);
        return;
      }
      const timer = setTimeout(() => {
        this.#pending.delete(ref);
        reject(new DeviceGateError('timeout', `No answer from the gateway within ${this.#options.requestTimeoutMs} ms`, { ref }));
      }, this.#options.requestTimeoutMs);
      this.#pending.set(ref, { resolve, reject, timer });
    });
  }

  /** @param {unknown} ref */
  #takePending(ref) {
    if (typeof ref !== 'string') return undefined;
    const p = this.#pending.get(ref);
    if (!p) return undefined;
    this.#pending.delete(ref);
    clearTimeout(p.timer);
    return p;
  }

  /**
   * @param {string} code
   * @param {string} message
   */
  #failPending(code, message) {
    for (const [ref, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new DeviceGateError(code, message, { ref }));
    }
    this.#pending.clear();
  }

  /** @param {Record<string, unknown>} envelope */
  #writeOrThrow(envelope) {
    const socket = this.#socket;
    if (!socket || socket.readyState !== OPEN) {
      throw new DeviceGateError('not_connected', `Device ${this.#options.deviceId} is not connected (state: ${this.#state})`);
    }
    socket.send(JSON.stringify(envelope));
  }

  /**
   * Writes to the connection a message or rpc came on; if it is gone, the gateway redelivers (acks) or times out (rpcs).
   * @param {any} socket
   * @param {Record<string, unknown>} envelope
   */
  #write(socket, envelope) {
    if (socket.readyState !== OPEN) return;
    try {
      socket.send(JSON.stringify(envelope));
    } catch (e) {
      this.#options.logger?.debug(`DeviceGate: write failed: ${errorMessage(e)}`);
    }
  }

  /** @param {string | undefined} queryToken */
  #endpoint(queryToken) {
    const u = new URL(this.#options.url ?? '');
    if (u.protocol === 'http:') u.protocol = 'ws:';
    else if (u.protocol === 'https:') u.protocol = 'wss:';
    u.pathname = `${u.pathname.replace(/\/+$/, '')}/ws`;
    u.search = '';
    u.hash = '';
    u.searchParams.set('deviceId', this.#options.deviceId);
    if (queryToken) u.searchParams.set('access_token', queryToken);
    return u.toString();
  }

  /** @param {DeviceClientState} state */
  #setState(state) {
    if (this.#state === state) return;
    const previous = this.#state;
    this.#state = state;
    try {
      this.onStateChange?.(state, previous);
    } catch (e) {
      this.#options.logger?.warn('DeviceGate: onStateChange threw', e);
    }
  }

  /** @param {DeviceGateError} error */
  #report(error) {
    this.#options.logger?.debug(`DeviceGate: ${error.code}: ${error.message}`);
    try {
      this.onError?.(error);
    } catch (e) {
      this.#options.logger?.warn('DeviceGate: onError threw', e);
    }
  }
}

/** @param {unknown} header */
function retryAfterMs(header) {
  const seconds = Number(Array.isArray(header) ? header[0] : header);
  return Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0;
}

/** @param {string} base64 */
function fromBase64(base64) {
  const text = atob(base64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** @param {unknown} e */
function errorMessage(e) {
  return e instanceof Error ? e.message : String(e);
}
