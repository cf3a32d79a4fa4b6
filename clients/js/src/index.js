export { DeviceClient, SUBPROTOCOL } from './device-client.js';
export { GatewayClient } from './gateway-client.js';
export { DeviceGateError, RpcError } from './errors.js';
export { backoffDelay, closeRule } from './backoff.js';

/** @typedef {import('./device-client.js').DeviceClientOptions} DeviceClientOptions */
/** @typedef {import('./device-client.js').DeviceClientState} DeviceClientState */
/** @typedef {import('./device-client.js').DeviceMessage} DeviceMessage */
/** @typedef {import('./device-client.js').DesiredState} DesiredState */
/** @typedef {import('./device-client.js').RpcRequest} RpcRequest */
/** @typedef {import('./device-client.js').SentResult} SentResult */
/** @typedef {import('./gateway-client.js').GatewayClientOptions} GatewayClientOptions */
/** @typedef {import('./gateway-client.js').GatewayEvent} GatewayEvent */
/** @typedef {import('./gateway-client.js').MessageBody} MessageBody */
