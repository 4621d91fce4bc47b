// Sensing's polling and change detection against a scripted PveApi: one request per node per
// round, change-only events, node failures at once, API outages as events.
import { describe, expect, it } from 'vitest';
import { HomeostatError, sleep } from '../core/mod.ts';
import { PveObserver } from '../agents/sensing/observe.ts';
import { FleetTracker, type Emission } from '../agents/sensing/tracker.ts';
import { generateFleet, referenceFleet } from '../fleet/reference-fleet.ts';
import type { PveApi, PveGuest, PveNode } from '../fleet/pve-types.ts';

function fakePve(fleet = referenceFleet()) {
  const calls: string[] = [];
  const state = new Map(fleet.guests.map((g) => [g.vmid, { node: g.node, status: 'running' }]));
  const down = new Set<string>();
  let apiDown = false;
  const unavailable = (what: string) => new HomeostatError('HOMEOSTAT_ERR_PVE_UNAVAILABLE', `${what}: 595 no route to host`);
  const pve = {
    async listNodes(): Promise<PveNode[]> {
      calls.push('nodes');
      if (apiDown) throw unavailable('GET /nodes');
      return fleet.nodes.map((n) => ({ node: n.name, status: 'online', cpu: 0.1, mem: 1, maxmem: 4 }));
    },
    async listGuests(node: string, types?: string[]): Promise<PveGuest[]> {
      calls.push(`guests:${node}:${(types ?? []).join(',')}`);
      if (apiDown || down.has(node)) throw unavailable(`GET /nodes/${node}/lxc`);
      return [...state].filter(([, s]) => s.node === node).map(([vmid, s]) => ({ vmid, node, type: 'lxc', status: s.status, cpu: 0.01, mem: 10, maxmem: 100, disk: 1, maxdisk: 10 }));
    },
  } as unknown as PveApi;
  return { pve, calls, state, down, setApiDown: (v: boolean) => (apiDown = v), fleet };
}

const events = (em: { api: Emission[]; nodes: Emission[]; guests: Emission[] }) =>
  [...em.api, ...em.nodes, ...em.guests].map((e) => (e.kind === 'event' ? { type: e.type, subject: e.subject, data: e.data as unknown as Record<string, unknown> } : undefined)).filter((e) => !!e);

describe('sensing: polling and change detection', () => {
  it('one listNodes plus one listGuests per node per round, not per guest', async () => {
    const f = fakePve();
    const obs = new PveObserver(f.pve, f.fleet, 1000);
    await obs.observe();
    expect(f.calls.sort()).toEqual(['guests:node-a:lxc', 'guests:node-b:lxc', 'guests:node-c:lxc', 'nodes']);
  });

  it('publishes GuestDiscovered once, then only changes', async () => {
    const f = fakePve();
    const obs = new PveObserver(f.pve, f.fleet, 1000);
    const tr = new FleetTracker(f.fleet, 2, 10_000);
    const first = tr.apply(await obs.observe(), new Map());
    expect(events(first).filter((e) => e.type === 'GuestDiscovered')).toHaveLength(12);
    expect(events(first).filter((e) => e.type === 'NodeDiscovered')).toHaveLength(3);
    expect(first.kv.length).toBe(12 + 3 + 1);
    expect(first.metrics.length).toBe(12 + 3);
    const second = tr.apply(await obs.observe(), new Map());
    expect(events(second)).toEqual([]);
    expect(second.kv).toEqual([]);
    f.state.get(101)!.status = 'stopped';
    const third = tr.apply(await obs.observe(), new Map());
    expect(events(third)).toMatchObject([{ type: 'GuestStateChanged', subject: 'fleet.events.guest.node-c.101', data: { vmid: 101, state: 'stopped', previousState: 'running', previousHealth: 'healthy', health: 'unknown' } }]);
  });

  it('health turns unhealthy only after healthFailures consecutive failed probes; a flip is a GuestProbe', async () => {
    const f = fakePve();
    const obs = new PveObserver(f.pve, f.fleet, 1000);
    const tr = new FleetTracker(f.fleet, 2, 10_000);
    tr.apply(await obs.observe(), new Map([[122, { ok: true }]]));
    const bad = new Map([[122, { ok: false, reason: 'HTTP 503' }]]);
    expect(events(tr.apply(await obs.observe(), bad))).toEqual([]);
    expect(events(tr.apply(await obs.observe(), bad))).toMatchObject([{ type: 'GuestProbe', data: { vmid: 122, health: 'unhealthy', previousHealth: 'healthy' } }]);
    expect(tr.guests.get(122)!.probeFailures).toBe(2);
    expect(events(tr.apply(await obs.observe(), new Map([[122, { ok: true }]])))).toMatchObject([{ type: 'GuestProbe', data: { health: 'healthy' } }]);
  });

  it('a node whose API fails is NodeUnreachable in the same round; its guests are unknown and unreachable, not crashed', async () => {
    const f = fakePve();
    const obs = new PveObserver(f.pve, f.fleet, 1000);
    const tr = new FleetTracker(f.fleet, 2, 10_000);
    tr.apply(await obs.observe(), new Map());
    f.down.add('node-c');
    const em = tr.apply(await obs.observe(), new Map());
    const ev = events(em);
    expect(ev[0]).toMatchObject({ type: 'NodeUnreachable', data: { node: 'node-c', reachable: false } });
    const guests = ev.filter((e) => e.type === 'GuestStateChanged');
    expect(guests.map((e) => e.data.vmid).sort()).toEqual([101, 102, 122, 200]);
    expect(guests.every((e) => e.data.state === 'unknown')).toBe(true);
    expect(tr.guests.get(101)!.reachable).toBe(false);
    expect(tr.nodes.get('node-c')!.unreachableSince).toBeDefined();
    f.down.delete('node-c');
    expect(events(tr.apply(await obs.observe(), new Map()))[0]).toMatchObject({ type: 'NodeReachable' });
  });

  it('a whole-API outage is PveUnavailable (once), guests untouched; PveAvailable when it returns', async () => {
    const f = fakePve();
    const obs = new PveObserver(f.pve, f.fleet, 1000);
    const tr = new FleetTracker(f.fleet, 2, 10_000);
    tr.apply(await obs.observe(), new Map());
    f.setApiDown(true);
    expect(events(tr.apply(await obs.observe(), new Map()))).toMatchObject([{ type: 'PveUnavailable', subject: 'fleet.events.api', data: { available: false, code: 'HOMEOSTAT_ERR_PVE_UNAVAILABLE' } }]);
    expect(events(tr.apply(await obs.observe(), new Map()))).toEqual([]);
    f.setApiDown(false);
    expect(events(tr.apply(await obs.observe(), new Map()))).toMatchObject([{ type: 'PveAvailable', data: { available: true } }]);
  });

  it('follows a migrated guest to its new node', async () => {
    const f = fakePve();
    const obs = new PveObserver(f.pve, f.fleet, 1000);
    const tr = new FleetTracker(f.fleet, 2, 10_000);
    tr.apply(await obs.observe(), new Map());
    f.state.get(243)!.node = 'node-b';
    const ev = events(tr.apply(await obs.observe(), new Map()));
    expect(ev).toMatchObject([{ type: 'GuestStateChanged', subject: 'fleet.events.guest.node-b.243', data: { node: 'node-b', state: 'running' } }]);
  });

  it('a node still answering after the round deadline is stale, not dead, and not asked twice', async () => {
    const f = fakePve();
    let release!: () => void;
    const slow = new Promise<void>((r) => (release = r));
    const orig = f.pve.listGuests.bind(f.pve);
    let slowCalls = 0;
    (f.pve as { listGuests: PveApi['listGuests'] }).listGuests = async (node, types) => {
      if (node === 'node-a') {
        slowCalls++;
        await slow;
      }
      return orig(node, types);
    };
    const obs = new PveObserver(f.pve, f.fleet, 50);
    const tr = new FleetTracker(f.fleet, 2, 10_000);
    const o1 = await obs.observe();
    expect(o1.nodes.get('node-a')!.stale).toBe(true);
    expect(o1.guests.has(243)).toBe(false);
    tr.apply(o1, new Map());
    await obs.observe();
    expect(slowCalls).toBe(1);
    release();
    await sleep(10);
    const o3 = await obs.observe();
    expect(o3.nodes.get('node-a')!.stale).toBe(false);
    expect(o3.guests.get(243)).toMatchObject({ state: 'running', reachable: true });
  });
  it('rewrites unchanged records once per refresh period each, spread over the rounds, not all in one round', async () => {
    const f = fakePve(generateFleet({ guests: 1000, layers: 4, nodes: 3 }));
    const obs = new PveObserver(f.pve, f.fleet, 1000);
    const tr = new FleetTracker(f.fleet, 2, 10_000);
    const observed = await obs.observe();
    const keys = (em: { kv: Emission[] }) => em.kv.flatMap((e) => (e.kind === 'kv' && e.key.startsWith('guest.') ? [e.key] : []));
    expect(keys(tr.apply(observed, new Map(), 0))).toHaveLength(1000);
    const writes = new Map<string, number[]>();
    let most = 0;
    for (let t = 1000; t <= 30_000; t += 1000) {
      const round = keys(tr.apply(observed, new Map(), t));
      most = Math.max(most, round.length);
      for (const k of round) writes.set(k, [...(writes.get(k) ?? []), t]);
    }
    // every record refreshed, about a tenth of them a round (all 1,000 in one round before)
    expect(writes.size).toBe(1000);
    expect(most).toBeLessThan(250);
    for (const ts of writes.values()) {
      // never sooner than half a period after the last write, never later than a period and a half
      for (const [i, t] of ts.entries()) expect(t - (i ? ts[i - 1] : 0)).toBeGreaterThanOrEqual(5000);
      expect(ts[0]).toBeLessThanOrEqual(15_000);
      expect(30_000 - ts.at(-1)!).toBeLessThan(15_000);
    }
  });
});
