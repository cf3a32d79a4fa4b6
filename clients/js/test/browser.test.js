// The browser device page (examples/browser) in real headless Chromium, built on this SDK, against the real gateway.
// The page uses the browser's own WebSocket: token in the query string, no handshake status.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { serve } from '../../../examples/browser/serve.mjs';
import { startGateway, mintToken, api, eventually } from './gateway.js';

const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

test('the browser device page connects, shows messages, answers rpcs and reconnects after 4001', async (t) => {
  assert.ok(existsSync(executablePath), `Chromium not found at ${executablePath} (.ci/run installs Debian's chromium)`);
  const site = await serve(0);
  t.after(() => site.close());
  const gw = await startGateway(t, { args: [`--DeviceGate:WebSockets:AllowedOrigins:0=${site.url}`] });

  const browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  t.after(() => browser.close());
  const page = await browser.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));

  const hash = new URLSearchParams({ gateway: gw.url, device: 'kiosk-1', token: mintToken('kiosk-1') });
  await page.goto(`${site.url}/#${hash}`);
  await page.locator('#state[data-state=connected]').waitFor({ timeout: 20_000 });

  const sent = await api(gw, 'POST', '/api/devices/kiosk-1/messages?ttl=60', { show: 'hello kiosk' });
  assert.equal(sent.status, 202);
  await page.locator(`#messages li[data-id="${sent.body.id}"]`).waitFor({ timeout: 20_000 });
  assert.match(await page.locator('#messages li').first().innerText(), /hello kiosk/);
  await eventually(async () => (await api(gw, 'GET', `/api/messages/${sent.body.id}`)).body.status === 'acked', undefined, 'page never acked');

  const rpc = await api(gw, 'POST', '/api/devices/kiosk-1/rpc?timeout=5', { cmd: 'ping' });
  assert.equal(rpc.status, 200);
  assert.equal(rpc.body.pong, true);
  assert.match(rpc.body.userAgent, /Chrome/);
  const unknown = await api(gw, 'POST', '/api/devices/kiosk-1/rpc?timeout=5', { cmd: 'format-disk' });
  assert.equal(unknown.status, 502);
  assert.equal(unknown.body.code, 'unknown_command');

  // Closed through the API (4001): the page comes back by itself.
  assert.equal((await api(gw, 'DELETE', '/api/devices/kiosk-1/connection')).status, 204);
  await page.locator('#log li', { hasText: 'state: reconnecting' }).waitFor({ timeout: 20_000 });
  await page.locator('#state[data-state=connected]').waitFor({ timeout: 20_000 });
  await eventually(async () => (await api(gw, 'GET', '/api/devices/kiosk-1')).body.online, undefined, 'not back online');

  // Telemetry from the page: the gateway answers the send with its message id.
  await page.locator('#telemetry button').click();
  await page.locator('#sent', { hasText: 'sent ' }).waitFor({ timeout: 20_000 });

  if (process.env.DEVICEGATE_SCREENSHOTS) {
    await page.screenshot({ path: `${process.env.DEVICEGATE_SCREENSHOTS}/browser-device.png`, fullPage: true });
  }
  assert.deepEqual(pageErrors, []);
});
