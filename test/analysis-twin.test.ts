// Sensing → analysis against the real simulator and nats-server: each case gets its own fleet
// (own vmids and node names) and its own simulator, so nothing leaks between cases or files.
import { afterEach, describe, expect, inject, it } from 'vitest';
import { Bus, kvKeys, kvPut, type Alert, type Envelope, type GuestEvent, type Incident, type NodeEvent } from '../bus/mod.ts';
import { createLogger } from '../core/mod.ts';
import { loadConfig } from '../agents/mod.ts';
import type { AnalysisHandle } from '../agents/analysis/mod.ts';
import { startStack, type Stack } from '../cli/stack.ts';
import { buildFleet, type Fleet } from '../fleet/manifest.ts';
import { REFERENCE_MANIFEST } from '../fleet/reference-fleet.ts';

const TOKEN_ID = 'test@pve!analysis';
const TOKEN_SECRET = '22222222-3333-4444-8555-666666666666';
let caseNo = 0;

interface Twin {
  stack: Stack;
  bus: Bus;
  fleet: Fleet;
  V(v: number): number;
  N(n: string): string;
  seen: { subject: string; env: Envelope<Record<string, unknown>> }[];
  fault(kind: string, target: string | number, durationMs?: number): Promise<string>;
  heal(id: string): Promise<void>;
  /** Incidents of this fleet; api incidents only when asked, since fleet.events.api carries no
   *  fleet identity and other files' simulators may be failing their API right now. */
  incidents(phase?: string, withApi?: boolean): Incident[];
  stop(): Promise<void>;
}

const running: Twin[] = [];
afterEach(async () => {
  for (const t of running.splice(0)) await t.stop();
});

async function twin(bootMs: Record<number, number> = {}): Promise<Twin> {
  const name = `at${process.pid}x${++caseNo}`;
  const off = 60_000 + (process.pid % 1000) * 100 + caseNo * 1000;
  const V = (v: number) => v + off;
  const N = (n: string) => `${name}-${n}`;
  const m = structuredClone(REFERENCE_MANIFEST);
  const fleet = buildFleet({
    name,
    nodes: m.nodes.map((n) => ({ ...n, name: N(n.name) })),
    guests: m.guests.map((g) => ({ ...g, vmid: V(g.vmid), name: `${name}-${g.name}`, node: N(g.node), dependsOn: g.dependsOn?.map(V), bootMs: bootMs[g.vmid] ?? g.bootMs })),
    policies: { senseIntervalMs: 200, probeTimeoutMs: 500 },
  });
  const bus = await Bus.connect({ servers: inject('natsUrl'), source: 'test' });
  const seen: Twin['seen'] = [];
  const sub = bus.nc.subscribe('fleet.>');
  let apiTag = '\u0000';
  void (async () => {
    for await (const m of sub) {
      const text = m.string();
      if (m.subject.includes(name) || text.includes(name) || (m.subject === 'fleet.events.api' && text.includes(apiTag))) seen.push({ subject: m.subject, env: JSON.parse(text) as Envelope<Record<string, unknown>> });
    }
  })();
  await bus.nc.flush();
  const stack = await startStack({
    config: loadConfig({}),
    fleet,
    log: createLogger('silent'),
    natsUrl: inject('natsUrl'),
    sim: { port: 0, http: true, timeScale: 0.05, tokenId: TOKEN_ID, tokenSecret: TOKEN_SECRET },
    agents: ['analysis', 'sensing'],
    options: { analysis: { tickMs: 50 } },
  });
  apiTag = `:${new URL(stack.pveUrl!).port}`;
  const auth = { authorization: `PVEAPIToken=${TOKEN_ID}=${TOKEN_SECRET}` };
  const t: Twin = {
    stack, bus, fleet, V, N, seen,
    async fault(kind, target, durationMs) {
      const res = await fetch(`${stack.pveUrl}/sim/faults`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ kind, target, durationMs }) });
      expect(res.status).toBe(201);
      return ((await res.json()) as { id: string }).id;
    },
    async heal(id) {
      expect((await fetch(`${stack.pveUrl}/sim/faults/${id}`, { method: 'DELETE', headers: auth })).status).toBe(200);
    },
    incidents(phase, withApi = false) {
      return seen
        .filter((e) => e.subject.startsWith('fleet.incidents.') && (!phase || e.subject.endsWith(`.${phase}`)))
        .map((e) => e.env.data as unknown as Incident)
        .filter((i) => withApi || i.kind !== 'api');
    },
    async stop() {
      const durables = (stack.agents.get('analysis') as AnalysisHandle | undefined)?.durables ?? [];
      await stack.stop();
      for (const d of durables) await bus.jsm.consumers.delete('FLEET', d).catch(() => undefined);
      await bus.stop();
    },
  };
  running.push(t);
  // the first state is known: every guest discovered and judged
  await until(() => seen.filter((e) => e.env.type === 'GuestDiscovered').length === 12);
  return t;
}

async function until<T>(fn: () => T | undefined | false | Promise<T | undefined | false>, ms = 10_000): Promise<T> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    const v = await fn();
    if (v) return v;
  }
  throw new Error('timed out waiting');
}

const quiet = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('sensing → analysis against the simulator', () => {
  it('crash → GuestStateChanged, GuestDown alert, ONE guest incident (crashed); started again → resolved', async () => {
    const t = await twin();
    await t.fault('crash', t.V(120));
    const ev = await until(() => t.seen.find((e) => e.env.type === 'GuestStateChanged' && (e.env.data as GuestEvent).vmid === t.V(120)));
    const alert = await until(() => t.seen.find((e) => e.env.type === 'AlertFired' && (e.env.data as Alert).name === 'GuestDown'));
    expect(alert.env.causationId).toBe(ev.env.id);
    const inc = await until(() => t.incidents('opened')[0]);
    expect(inc).toMatchObject({ kind: 'guest', rootCause: { vmid: t.V(120), reason: 'crashed', alert: 'GuestDown' } });
    await t.stack.pve!.start({ node: t.N('node-b'), vmid: t.V(120), type: 'lxc' });
    await until(() => t.incidents('resolved').find((i) => i.id === inc.id));
    expect(t.incidents('opened')).toHaveLength(1);
  });

  it('hang → HealthCheckFailed → incident with reason unhealthy', async () => {
    const t = await twin();
    await t.fault('hang', t.V(243));
    const inc = await until(() => t.incidents('opened')[0]);
    expect(inc).toMatchObject({ kind: 'guest', rootCause: { vmid: t.V(243), reason: 'unhealthy', alert: 'HealthCheckFailed' } });
    expect(t.seen.some((e) => e.env.type === 'AlertFired' && (e.env.data as Alert).name === 'HealthCheckFailed')).toBe(true);
  });

  it('node-down → NodeUnreachable at once, ONE node incident, its guests suppressed, no guest incidents for them', async () => {
    const t = await twin();
    await t.fault('node-down', t.N('node-a'));
    await until(() => t.seen.find((e) => e.env.type === 'NodeUnreachable' && (e.env.data as NodeEvent).node === t.N('node-a')), 3000);
    const inc = await until(() => t.incidents('opened').find((i) => i.kind === 'node'), 3000);
    expect(inc.rootCause).toMatchObject({ node: t.N('node-a'), alert: 'NodeDown' });
    expect(inc.suppressed.map((s) => s.vmid).sort()).toEqual([124, 243, 289].map(t.V).sort());
    await quiet(1000); // several rounds: nothing else may open
    expect(t.incidents('opened').filter((i) => i.kind === 'guest')).toEqual([]);
    expect(t.seen.some((e) => e.env.type === 'AlertFired' && (e.env.data as Alert).name === 'GuestDown')).toBe(false);
  });

  it('layer-1 crash while dependents turn unhealthy → ONE incident: root cause 101, the others symptoms', async () => {
    const t = await twin();
    await t.fault('crash', t.V(101));
    for (const v of [159, 155, 124]) await t.fault('unhealthy', t.V(v));
    const inc = await until(() => t.incidents().filter((i) => i.rootCause.vmid === t.V(101)).find((i) => i.symptoms.length === 3));
    expect(inc.rootCause).toMatchObject({ reason: 'crashed', alert: 'GuestDown' });
    expect(inc.symptoms.map((s) => s.vmid).sort()).toEqual([124, 155, 159].map(t.V).sort());
    await quiet(800);
    expect(t.incidents('opened')).toHaveLength(1);
  });

  it('a symptom noticed first is folded into the root cause incident and marked', async () => {
    const t = await twin();
    await t.fault('unhealthy', t.V(159));
    const early = await until(() => t.incidents('opened')[0]);
    expect(early.rootCause.vmid).toBe(t.V(159));
    await t.fault('crash', t.V(101));
    const folded = await until(() => t.incidents('resolved').find((i) => i.id === early.id));
    const into = folded.timeline.at(-1)!.ref!;
    expect(into).toMatch(/^folded:/);
    const root = t.incidents('opened').find((i) => i.id === into.slice('folded:'.length))!;
    expect(root.rootCause.vmid).toBe(t.V(101));
    expect(root.symptoms.map((s) => s.vmid)).toContain(t.V(159));
  });

  it('a guest that runs but still boots is booting, not failing: no HealthCheckFailed; healthy resolves the crash', async () => {
    const t = await twin({ 243: 40_000 }); // × time scale 0.05: 2 s of failing probes after PVE says running
    const vmid = t.V(243);
    const ev = (pred: (d: GuestEvent) => boolean) => t.seen.find((e) => e.subject.startsWith('fleet.events.guest.') && pred(e.env.data as GuestEvent));
    await t.fault('crash', vmid);
    const inc = await until(() => t.incidents('opened').find((i) => i.rootCause.vmid === vmid), 8000);
    await t.stack.pve!.waitForTask(t.N('node-a'), await t.stack.pve!.start({ node: t.N('node-a'), vmid, type: 'lxc' }), { timeoutMs: 10_000 });
    const up = await until(() => ev((d) => d.vmid === vmid && d.state === 'running' && d.previousState === 'stopped'), 8000);
    expect(up.env.data).toMatchObject({ health: 'unknown', booting: true });
    await until(() => ev((d) => d.vmid === vmid && d.health === 'healthy' && d.previousHealth === 'unknown' && d.previousState === 'running'), 10_000);
    await until(() => t.incidents('resolved').find((i) => i.id === inc.id), 8000);
    expect(t.seen.some((e) => e.env.type === 'AlertFired' && (e.env.data as Alert).name === 'HealthCheckFailed')).toBe(false);
    expect(t.seen.some((e) => (e.env.data as GuestEvent).vmid === vmid && (e.env.data as GuestEvent).health === 'unhealthy')).toBe(false);
  });

  it('desired state stopped: a deliberate shutdown is no incident', async () => {
    const t = await twin();
    await kvPut(t.bus.kv.fleetState, kvKeys.desired(t.V(104)), { state: 'stopped', maintenance: false, by: 'operator', reason: 'test', at: new Date().toISOString() });
    const analysis = t.stack.agents.get('analysis') as AnalysisHandle;
    await until(() => analysis.analyzer.view.desired.get(t.V(104))?.state === 'stopped');
    await t.stack.pve!.shutdown({ node: t.N('node-b'), vmid: t.V(104), type: 'lxc' });
    await until(() => t.seen.find((e) => e.env.type === 'GuestStateChanged' && (e.env.data as GuestEvent).vmid === t.V(104) && (e.env.data as GuestEvent).state === 'stopped'));
    await quiet(600);
    expect(t.incidents()).toEqual([]);
    expect(t.seen.some((e) => e.env.type === 'AlertFired' && (e.env.data as Alert).name !== 'PveUnavailable')).toBe(false);
  });

  it('api-error on all → PveUnavailable and one api incident, sensing keeps running, PveAvailable and resolved after', async () => {
    const t = await twin();
    const id = await t.fault('api-error', '*');
    const down = await until(() => t.seen.find((e) => e.env.type === 'PveUnavailable'), 8000);
    expect(down.env.data).toMatchObject({ available: false, code: 'HOMEOSTAT_ERR_PVE_UNAVAILABLE' });
    const inc = await until(() => t.incidents('opened', true).find((i) => i.kind === 'api' && i.rootCause.name === t.fleet.name), 8000);
    expect(inc.rootCause.alert).toBe('PveUnavailable');
    await t.heal(id);
    await until(() => t.seen.find((e) => e.env.type === 'PveAvailable'), 8000);
    await until(() => t.incidents('resolved', true).find((i) => i.id === inc.id), 8000);
    expect(t.seen.filter((e) => e.env.type === 'PveUnavailable')).toHaveLength(1);
    let settled = false;
    void t.stack.agents.get('sensing')!.stopped.then(() => (settled = true));
    await quiet(20);
    expect(settled).toBe(false);
  });
});
