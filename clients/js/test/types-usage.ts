// Compiled (not run) by `npm test`: the published types must accept what the README shows and refuse misuse.
import { DeviceClient, GatewayClient, RpcError, DeviceGateError, type DeviceMessage, type SentResult, type DesiredState } from '@devicegate/client';

const device = new DeviceClient({
  url: 'http://127.0.0.1:8080',
  deviceId: 'sensor-7',
  token: async () => 'token',
  onMessage: (m: DeviceMessage) => {
    const id: string = m.id;
    const bytes: Uint8Array | undefined = m.binary;
    void id;
    void bytes;
  },
  onRpc: (data) => {
    if (data === null) throw new RpcError('bad', 'no data');
    return { ok: true };
  },
  onDesiredState: (s: DesiredState) => {
    const version: number = s.version;
    const delta: Record<string, unknown> = s.delta;
    void version;
    void delta;
  },
  onStateChange: (state, previous) => console.log(state, previous),
  onError: (e: DeviceGateError) => console.log(e.code, e.status),
});

async function use(): Promise<void> {
  await device.connect();
  const sent: SentResult = await device.send('hub-1', { a: 1 }, { ttl: 60 });
  const status: 'sent' | 'queued' = sent.status;
  void status;
  await device.publish('floor-2', 'hi');
  await device.join('floor-2');
  await device.close();

  const gateway = new GatewayClient({ url: 'http://127.0.0.1:8080', apiKey: 'k' });
  const r = await gateway.send('sensor-7', new Uint8Array([1]), { ttl: 5, idempotencyKey: 'x' });
  const id: string = r.id;
  void id;
  const batch = await gateway.sendBatch([{ device: 'a', text: 'hi' }, { device: 'b', data: { x: 1 }, ttl: 60 }]);
  void batch.failed;
  for await (const e of gateway.events({ types: ['connected'] })) void e.seq;
  await gateway.setTags('sensor-7', { site: 'berlin' });
  const tagged = await gateway.devices({ online: false, tags: { site: 'berlin' } });
  void tagged.next;
  const tags: Record<string, string> = (await gateway.device('sensor-7')).tags;
  void tags;

  // @ts-expect-error deviceId is required
  new DeviceClient({ url: 'x' });
  // @ts-expect-error ttl is a number of seconds
  await device.send('x', 1, { ttl: 'soon' });
}
void use;
