// The Alertmanager receiver: both payload shapes become fleet.alerts.<alertname>; garbage is a
// 400 and the agent keeps serving.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Bus, patterns, type Alert, type Envelope } from '../bus/mod.ts';
import { createLogger, sleep } from '../core/mod.ts';
import { loadConfig } from '../agents/mod.ts';
import { agent as sensing, type SensingHandle } from '../agents/sensing/mod.ts';
import { buildFleet } from '../fleet/manifest.ts';
import { REFERENCE_MANIFEST } from '../fleet/reference-fleet.ts';

const fleet = buildFleet({ ...structuredClone(REFERENCE_MANIFEST), name: `am-${process.pid}` });
const tag = `T${Date.now().toString(36)}`;
let bus: Bus;
let handle: SensingHandle;
let base: string;
const seen: Envelope<Alert>[] = [];

beforeAll(async () => {
  bus = await Bus.connect({ servers: inject('natsUrl'), source: 'sensing' });
  handle = await sensing.start({ name: 'sensing', config: loadConfig({}), log: createLogger('silent'), bus, fleet, options: { alertmanagerPort: 0 } }) as SensingHandle;
  base = `http://127.0.0.1:${handle.alertmanagerPort}`;
  const sub = bus.nc.subscribe(patterns.alerts);
  void (async () => {
    for await (const m of sub) {
      const env = JSON.parse(new TextDecoder().decode(m.data)) as Envelope<Alert>;
      if (env.data.name?.startsWith(tag)) seen.push(env);
    }
  })();
});

afterAll(async () => {
  await handle?.stop();
  await bus?.stop();
});

async function post(path: string, body: unknown, raw = false): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: raw ? (body as string) : JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

async function waitFor(n: number): Promise<void> {
  for (let i = 0; i < 200 && seen.length < n; i++) await sleep(25);
}

describe('sensing: Alertmanager receiver', () => {
  it('listens on a free port and says so on the handle', () => {
    expect(handle.alertmanagerPort).toBeGreaterThan(0);
  });

  it('accepts the POST /api/v2/alerts array', async () => {
    const r = await post('/api/v2/alerts', [
      { labels: { alertname: `${tag}Disk`, severity: 'critical', vmid: '159', instance: 'node-b:9100' }, annotations: { summary: 'disk almost full' }, startsAt: '2025-01-01T00:00:00.123456789Z', generatorURL: 'http://prom/graph' },
      { labels: { alertname: `${tag}Old`, instance: 'node-a:9100' }, startsAt: '2025-01-01T00:00:00Z', endsAt: '2025-01-01T00:05:00Z' },
    ]);
    expect(r).toMatchObject({ status: 200, json: { status: 'success', shape: 'v2', published: 2 } });
    await waitFor(2);
    const disk = seen.find((e) => e.data.name === `${tag}Disk`)!;
    expect(disk.type).toBe('AlertFired');
    expect(disk.data).toMatchObject({ status: 'firing', severity: 'critical', vmid: 159, node: 'node-b', summary: 'disk almost full', origin: 'alertmanager', startsAt: '2025-01-01T00:00:00.123Z' });
    expect(disk.data.labels.homeostat_fleet).toBe(fleet.name);
    expect(disk.data.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    const old = seen.find((e) => e.data.name === `${tag}Old`)!;
    expect(old.type).toBe('AlertResolved');
    expect(old.data).toMatchObject({ status: 'resolved', node: 'node-a', severity: 'warning', endsAt: '2025-01-01T00:05:00.000Z' });
  });

  it('accepts the webhook_config payload (version 4)', async () => {
    const before = seen.length;
    const r = await post('/webhook', {
      version: '4', receiver: 'homeostat', status: 'firing', groupKey: '{}:{alertname="x"}', externalURL: 'http://am:9093',
      groupLabels: { alertname: `${tag}Web` }, commonLabels: { alertname: `${tag}Web` }, commonAnnotations: {},
      alerts: [
        { status: 'firing', labels: { alertname: `${tag}Web`, guest: 'web-lab22', severity: 'warning' }, annotations: { description: '5xx rate high' }, startsAt: '2025-01-01T00:00:00Z', endsAt: '0001-01-01T00:00:00Z', fingerprint: 'f00d' },
        { status: 'resolved', labels: { alertname: `${tag}Web`, node: 'node-c' }, annotations: {}, startsAt: '2025-01-01T00:00:00Z', endsAt: '2025-01-01T01:00:00Z', fingerprint: 'beef' },
      ],
    });
    expect(r).toMatchObject({ status: 200, json: { shape: 'webhook', published: 2 } });
    await waitFor(before + 2);
    const web = seen.filter((e) => e.data.name === `${tag}Web`);
    expect(web.find((e) => e.data.fingerprint === 'f00d')!.data).toMatchObject({ status: 'firing', vmid: 122, node: 'node-c', summary: '5xx rate high' });
    expect(web.find((e) => e.data.fingerprint === 'f00d')!.data.endsAt).toBeUndefined();
    expect(web.find((e) => e.data.fingerprint === 'beef')).toMatchObject({ type: 'AlertResolved', data: { node: 'node-c' } });
  });

  it('garbage is a 400 (or 404/405), never a crash', async () => {
    expect((await post('/api/v2/alerts', '{not json', true)).status).toBe(400);
    expect((await post('/api/v2/alerts', { hello: 'world' })).status).toBe(400);
    expect((await post('/api/v2/alerts', [])).status).toBe(400);
    expect((await post('/api/v2/alerts', [{ labels: { alertname: 42 } }])).status).toBe(400);
    expect((await post('/webhook', { version: '3', status: 'firing', alerts: [] })).status).toBe(400);
    expect((await post('/webhook', { version: '4', status: 'burning', alerts: [] })).status).toBe(400);
    expect((await post('/api/v2/alerts', [{ labels: { alertname: 'x' }, startsAt: 'x'.repeat(100) }])).status).toBe(400);
    expect((await post('/api/v2/alerts', 'x'.repeat(2 * 1024 * 1024), true)).status).toBe(413);
    expect((await post('/elsewhere', [])).status).toBe(404);
    expect((await fetch(`${base}/api/v2/alerts`)).status).toBe(405);
    // still alive and serving
    const ok = await post('/api/v2/alerts', [{ labels: { alertname: `${tag}After` } }]);
    expect(ok.status).toBe(200);
    let settled = false;
    void handle.stopped.then(() => (settled = true));
    await sleep(20);
    expect(settled).toBe(false);
  });
});
