// Sensing against the real simulator over HTTP and the real nats-server: discovery, change-only
// events, probes, KV, metrics, node outages at once, API outages as events.
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Bus, GuestRecord, kvGet, kvKeys, type Envelope, type GuestEvent, type NodeEvent, type ApiEvent } from '../bus/mod.ts';
import { createLogger, sleep } from '../core/mod.ts';
import { loadConfig } from '../agents/mod.ts';
import type { SensingHandle } from '../agents/sensing/mod.ts';
import { startStack, type Stack } from '../cli/stack.ts';
import { buildFleet, type Fleet } from '../fleet/manifest.ts';
import { REFERENCE_MANIFEST } from '../fleet/reference-fleet.ts';

const TOKEN_ID = 'test@pve!sensing';
const TOKEN_SECRET = '11111111-2222-4333-8444-555555555555';
const NAME = `st${process.pid}`;
const OFF = 50_000 + (process.pid % 1000) * 10;
const V = (v: number) => v + OFF;
const N = (n: string) => `${NAME}-${n}`;

function isolatedFleet(): Fleet {
  const m = structuredClone(REFERENCE_MANIFEST);
  return buildFleet({
    name: NAME,
    nodes: m.nodes.map((n) => ({ ...n, name: N(n.name) })),
    guests: m.guests.map((g) => ({ ...g, vmid: V(g.vmid), name: `${NAME}-${g.name}`, node: N(g.node), dependsOn: g.dependsOn?.map(V) })),
    policies: { senseIntervalMs: 200, probeTimeoutMs: 500 },
  });
}

const fleet = isolatedFleet();
let stack: Stack;
let bus: Bus;
const seen: { subject: string; env: Envelope<Record<string, unknown>> }[] = [];

async function fault(kind: string, target: string | number, durationMs?: number): Promise<string> {
  const res = await fetch(`${stack.pveUrl}/sim/faults`, {
    method: 'POST',
    headers: { authorization: `PVEAPIToken=${TOKEN_ID}=${TOKEN_SECRET}`, 'content-type': 'application/json' },
    body: JSON.stringify({ kind, target, durationMs }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { id: string }).id;
}

async function heal(id: string): Promise<void> {
  const res = await fetch(`${stack.pveUrl}/sim/faults/${id}`, { method: 'DELETE', headers: { authorization: `PVEAPIToken=${TOKEN_ID}=${TOKEN_SECRET}` } });
  expect(res.status).toBe(200);
}

async function until<T>(fn: () => T | undefined | false, ms = 10_000): Promise<T> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    const v = fn();
    if (v) return v;
  }
  throw new Error('timed out waiting');
}

const find = <T>(type: string, pred: (d: T) => boolean = () => true) => seen.find((e) => e.env.type === type && pred(e.env.data as T));
const sensing = () => stack.agents.get('sensing') as SensingHandle;

beforeAll(async () => {
  bus = await Bus.connect({ servers: inject('natsUrl'), source: 'test' });
  const port = { v: 0 };
  const sub = bus.nc.subscribe('fleet.>');
  void (async () => {
    for await (const m of sub) {
      const mine = m.subject.includes(NAME) || (m.subject === 'fleet.events.api' && port.v > 0 && m.string().includes(`:${port.v}`));
      if (mine) seen.push({ subject: m.subject, env: JSON.parse(m.string()) as Envelope<Record<string, unknown>> });
    }
  })();
  await bus.nc.flush();
  stack = await startStack({
    config: loadConfig({}),
    fleet,
    log: createLogger('silent'),
    natsUrl: inject('natsUrl'),
    sim: { port: 0, http: true, timeScale: 0.05, tokenId: TOKEN_ID, tokenSecret: TOKEN_SECRET },
    agents: ['sensing'],
  });
  port.v = Number(new URL(stack.pveUrl!).port);
});

afterAll(async () => {
  await stack?.stop();
  await bus?.stop();
});

describe('sensing against the simulator', () => {
  it('discovers every guest and node once, probes them healthy through /sim/health, writes KV and samples', async () => {
    await until(() => seen.filter((e) => e.env.type === 'GuestDiscovered').length === 12);
    await until(() => seen.filter((e) => e.env.type === 'NodeDiscovered').length === 3);
    const d = find<GuestEvent>('GuestDiscovered', (x) => x.vmid === V(101))!;
    expect(d.env.data).toMatchObject({ node: N('node-c'), state: 'running', health: 'healthy' });
    expect(d.subject).toBe(`fleet.events.guest.${N('node-c')}.${V(101)}`);
    // the KV record and the event are published side by side (pipelined, each acked): either may land first
    const rec = await until(() => kvGet(bus.kv.fleetState, kvKeys.guest(V(101)), GuestRecord));
    expect(rec?.value).toMatchObject({ state: 'running', health: 'healthy', reachable: true, layer: 1 });
    await until(() => seen.some((e) => e.subject === `fleet.metrics.${N('node-b')}.${V(159)}`));
    await until(() => seen.some((e) => e.subject === `fleet.metrics.${N('node-b')}.node`));
    // change-only: a few quiet rounds later there are still 12 guest events
    const r = sensing().rounds();
    await until(() => sensing().rounds() >= r + 3);
    expect(seen.filter((e) => e.subject.startsWith('fleet.events.guest.'))).toHaveLength(12);
  });

  it('crash → one GuestStateChanged with previous state and health; KV follows', async () => {
    await fault('crash', V(102));
    const ev = await until(() => find<GuestEvent>('GuestStateChanged', (x) => x.vmid === V(102)));
    expect(ev.env.data).toMatchObject({ state: 'stopped', previousState: 'running', previousHealth: 'healthy', health: 'unknown' });
    expect(ev.env.data.reason).toBeDefined();
    await until(async () => (await kvGet(bus.kv.fleetState, kvKeys.guest(V(102)), GuestRecord))?.value.state === 'stopped');
  });

  it('hang → GuestProbe unhealthy after consecutive failed probes', async () => {
    const id = await fault('hang', V(243));
    const ev = await until(() => find<GuestEvent>('GuestProbe', (x) => x.vmid === V(243) && x.health === 'unhealthy'));
    expect(ev.env.data).toMatchObject({ state: 'running', previousHealth: 'healthy' });
    expect(String(ev.env.data.reason)).toMatch(/failed probes/);
    await heal(id);
    await stack.pve!.reboot({ node: N('node-a'), vmid: V(243), type: 'lxc' });
    await until(() => find<GuestEvent>('GuestProbe', (x) => x.vmid === V(243) && x.health === 'healthy') ?? find<GuestEvent>('GuestStateChanged', (x) => x.vmid === V(243) && x.health === 'healthy'));
  });

  it('cert-expiring → an event carrying certDaysLeft', async () => {
    await fault('cert-expiring', V(122));
    const ev = await until(() => seen.find((e) => (e.env.data as GuestEvent).vmid === V(122) && (e.env.data as GuestEvent).certDaysLeft === 5));
    expect(ev.env.type).toBe('GuestResources');
  });

  it('node-down → NodeUnreachable at once; its guests are unknown and unreachable, not crashed; back → NodeReachable', async () => {
    const from = seen.length;
    const id = await fault('node-down', N('node-a'));
    const ev = await until(() => find<NodeEvent>('NodeUnreachable', (x) => x.node === N('node-a')), 5000);
    expect(ev.env.data).toMatchObject({ reachable: false, status: 'offline' });
    const onA = fleet.guests.filter((g) => g.node === N('node-a')).map((g) => g.vmid);
    await until(() => onA.every((v) => find<GuestEvent>('GuestStateChanged', (x) => x.vmid === v && x.state === 'unknown')));
    expect(seen.slice(from).some((e) => onA.includes((e.env.data as GuestEvent).vmid) && (e.env.data as GuestEvent).state === 'stopped')).toBe(false);
    await until(async () => (await kvGet(bus.kv.fleetState, kvKeys.guest(onA[0]), GuestRecord))?.value.reachable === false);
    await heal(id);
    await until(() => find<NodeEvent>('NodeReachable', (x) => x.node === N('node-a')));
  });

  it('api-error on everything → PveUnavailable, sensing keeps polling, PveAvailable after', async () => {
    const id = await fault('api-error', '*');
    const down = await until(() => find<ApiEvent>('PveUnavailable'));
    expect(down.env.data).toMatchObject({ available: false, code: 'HOMEOSTAT_ERR_PVE_UNAVAILABLE' });
    const r = sensing().rounds();
    await until(() => sensing().rounds() >= r + 2);
    expect(seen.filter((e) => e.env.type === 'PveUnavailable')).toHaveLength(1);
    await heal(id);
    await until(() => find<ApiEvent>('PveAvailable'));
    let settled = false;
    void sensing().stopped.then(() => (settled = true));
    await sleep(20);
    expect(settled).toBe(false);
  });
});

describe('sensing against the simulator over HTTPS', () => {
  it('trusts the self-signed certificate through ctx.pveAccess and probes /sim/health over TLS', async () => {
    const name = `${NAME}s`;
    const m = structuredClone(REFERENCE_MANIFEST);
    const off = OFF + 5000;
    const tlsFleet = buildFleet({
      name,
      nodes: m.nodes.map((n) => ({ ...n, name: `${name}-${n.name}` })),
      guests: m.guests.map((g) => ({ ...g, vmid: g.vmid + off, name: `${name}-${g.name}`, node: `${name}-${g.node}`, dependsOn: g.dependsOn?.map((d) => d + off) })),
      policies: { senseIntervalMs: 200, probeTimeoutMs: 500 },
    });
    const got: Envelope<GuestEvent>[] = [];
    const sub = bus.nc.subscribe(`fleet.events.guest.${name}-node-a.>`);
    void (async () => {
      for await (const msg of sub) got.push(JSON.parse(msg.string()) as Envelope<GuestEvent>);
    })();
    // the stack hands the simulator's certificate and token to the agents (ctx.pveAccess)
    const tls = await startStack({ config: loadConfig({}), fleet: tlsFleet, log: createLogger('silent'), natsUrl: inject('natsUrl'), sim: { port: 0, timeScale: 0.05 }, agents: ['sensing'] });
    try {
      expect(tls.pveUrl).toMatch(/^https:/);
      await until(() => got.filter((e) => e.type === 'GuestDiscovered').length === 3);
      expect(got.every((e) => e.data.health === 'healthy')).toBe(true);
      const res = await request(`${tls.pveUrl}/sim/faults`, {
        method: 'POST',
        headers: { authorization: `PVEAPIToken=${tls.pveTokenId}=${tls.pveTokenSecret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ kind: 'hang', target: 243 + off }),
        dispatcher: new Agent({ connect: { ca: tls.sim!.caPem } }),
      });
      await res.body.dump();
      expect(res.statusCode).toBe(201);
      await until(() => got.find((e) => e.type === 'GuestProbe' && e.data.vmid === 243 + off && e.data.health === 'unhealthy'));
    } finally {
      sub.unsubscribe();
      await tls.stop();
    }
  });
});
