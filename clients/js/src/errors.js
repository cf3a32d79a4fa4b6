/** An error the gateway (or the client itself) reported, with a stable `code`. */
export class DeviceGateError extends Error {
  /**
   * @param {string} code a stable word: an envelope error code from docs/protocol.md (`offline`, `forbidden`, ...),
   *   an HTTP problem type, or one of the client's own (`not_connected`, `disconnected`, `timeout`, `refused`)
   * @param {string} message
   * @param {{ status?: number, ref?: string, problem?: unknown }} [details]
   */
  constructor(code, message, details = {}) {
    super(message);
    this.name = 'DeviceGateError';
    /** @type {string} */
    this.code = code;
    /** HTTP status, when the error came from an HTTP answer. @type {number | undefined} */
    this.status = details.status;
    /** The `ref` of the envelope this error answers. @type {string | undefined} */
    this.ref = details.ref;
    /** The RFC 9457 problem body, when there was one. @type {unknown} */
    this.problem = details.problem;
  }
}

/** Throw this from an rpc handler to answer with `error` (the backend's call gets a 502 with this code). */
export class RpcError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = 'RpcError';
    /** @type {string} */
    this.code = code;
  }
}
