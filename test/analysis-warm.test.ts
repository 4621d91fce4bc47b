// A standby analysis' warm start (agents/analysis/rebuild.ts): it starts from its copy of
// fleet-state, read before it took over, and reads afresh only what the open incidents name. A
// guest that crashed after the copy was read, whose incident the previous replica opened, is
// judged on its fresh record: its incident stays open (judged on the copy, "running and healthy"
// would have resolved it while the guest is down).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kvKeys, kvPut, type Bus, type Envelope, type GuestEvent, type GuestRecord } from '../bus/mod.ts';
import { Analyzer, tuningFor } from '../agents/analysis/mod.ts';
import { readFleetState, rebuild } from '../agents/analysis/rebuild.ts';
import { isolatedFleet } from './helpers/fleet.ts';
import { testBus } from './helpers/bus.ts';

const OFF = 60_000 + (process.pid % 1000) * 10;

let bus: Bus;
beforeAll(async () => {
  bus = await testBus('analysis');
});
afterAll(async () => bus.stop());

describe('analysis warm start', () => {
  it('starts from a standby\'s copy of fleet-state, but judges what an open incident names on its fresh record', async () => {
    const fleet = isolatedFleet(`aw${process.pid}`, OFF);
    const leaf = fleet.guests.find((g) => !fleet.guests.some((o) => o.dependsOn?.includes(g.vmid)))!;
    const t0 = Date.now() - 60_000;
    const record = (g: (typeof fleet.guests)[number], state: 'running' | 'stopped', at: number): GuestRecord => ({
      vmid: g.vmid, name: g.name, node: g.node, type: 'lxc', layer: g.layer, state, health: state === 'running' ? 'healthy' : 'unknown', probeFailures: 0,
      reachable: true, updatedAt: new Date(at).toISOString(), stateSince: new Date(at).toISOString(),
    });
    for (const g of fleet.guests) await kvPut(bus.kv.fleetState, kvKeys.guest(g.vmid), record(g, 'running', t0));
    const copy = await readFleetState(bus);
    expect(copy.guests.get(kvKeys.guest(leaf.vmid))?.state).toBe('running');

    // after the copy: the leaf crashes, and the active replica opens its incident
    const crashedAt = Date.now() - 1000;
    await kvPut(bus.kv.fleetState, kvKeys.guest(leaf.vmid), record(leaf, 'stopped', crashedAt));
    const active = new Analyzer(fleet, tuningFor(fleet));
    await rebuild(bus, active);
    const env: Envelope<GuestEvent> = bus.envelope('GuestStateChanged', { vmid: leaf.vmid, node: leaf.node, name: leaf.name, state: 'stopped', health: 'unknown', reason: 'crash' }, { ts: new Date(crashedAt).toISOString() });
    const opened = active.onGuestEvent(env).flatMap((o) => (o.kind === 'incident' && o.phase === 'opened' ? [o.incident] : []));
    expect(opened).toHaveLength(1);
    await kvPut(bus.kv.incidents, kvKeys.incident(opened[0].id), opened[0]);

    // the standby takes over from its copy
    const standby = new Analyzer(fleet, tuningFor(fleet));
    const r = await rebuild(bus, standby, copy);
    expect(r).toMatchObject({ warm: true, incidents: 1 });
    expect(standby.view.guests.get(leaf.vmid)?.state).toBe('stopped');
    const out = standby.reconcile();
    expect(out.filter((o) => o.kind === 'incident' && o.phase === 'resolved')).toEqual([]);
    expect(standby.book.get(opened[0].id)?.status).toBe('open');
    // nothing new opened for it either: one incident per crash
    expect(out.filter((o) => o.kind === 'incident' && o.phase === 'opened')).toEqual([]);
  });
});
