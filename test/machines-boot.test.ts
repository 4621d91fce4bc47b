// LayeredBootMachine alone: SimulatedClock, fake actors, no NATS. Fake health checks take the
// guest's bootMs of simulated time, so the whole reference boot runs in milliseconds.
import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, SimulatedClock, type AnyActorRef } from 'xstate';
import { LayeredBootMachine, planBootWaves, transitiveDependents, type BootInput, type Progress } from '../state-machines/mod.ts';
import { referenceFleet, generateFleet } from '../fleet/reference-fleet.ts';
import { criticalPathMs, type Fleet } from '../fleet/manifest.ts';
import { flush, runUntil } from './helpers/machines.ts';


function bootInput(fleet: Fleet, over: Partial<BootInput> = {}): BootInput {
  return {
    workflowId: 'wf',
    perNodeConcurrency: 8,
    retries: 1,
    startedAt: 0,
    guests: fleet.guests.map((g) => ({ vmid: g.vmid, node: g.node, layer: g.layer, dependsOn: fleet.deps.get(g.vmid)!, bootTimeoutMs: 60_000, expectedBootMs: g.bootMs })),
    ...over,
  };
}

interface Opts {
  startMs?: number;
  /** Per vmid and attempt: 'ok' (default), 'fail', 'hang', or 'start-fail'. */
  behaviour?: (vmid: number, attempt: number) => 'ok' | 'fail' | 'hang' | 'start-fail';
}

/** A bound machine plus a record of every actor call, on a fresh SimulatedClock. */
function rig(fleet: Fleet, opts: Opts = {}, clock = new SimulatedClock()) {
  const sleep = (ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));
  const starts: { vmid: number; actionId: string; at: number; done?: number }[] = [];
  const checks: { vmid: number; at: number; signal: AbortSignal }[] = [];
  const healthyAt = new Map<number, number>();
  const progress: Progress[] = [];
  const behaviour = opts.behaviour ?? (() => 'ok');
  const machine = LayeredBootMachine.provide({
    actors: {
      startGuest: fromPromise(async ({ input }) => {
        const rec: { vmid: number; actionId: string; at: number; done?: number } = { vmid: input.vmid, actionId: input.actionId, at: clock.now() };
        starts.push(rec);
        if (opts.startMs) await sleep(opts.startMs);
        if (behaviour(input.vmid, input.attempt) === 'start-fail') throw new Error('PVE said no');
        rec.done = clock.now();
        return { upid: `UPID:${input.vmid}` };
      }),
      waitHealthy: fromPromise(async ({ input, signal }) => {
        checks.push({ vmid: input.vmid, at: clock.now(), signal });
        const b = behaviour(input.vmid, input.attempt);
        if (b === 'hang') return new Promise<never>(() => {});
        await sleep(fleet.byVmid.get(input.vmid)!.bootMs);
        if (b === 'fail') throw new Error('health 503');
        healthyAt.set(input.vmid, clock.now());
        return { at: clock.now() };
      }),
    },
    actions: { emitProgress: (_, p) => void progress.push(p) },
  });
  return { clock, machine, starts, checks, healthyAt, progress };
}

describe('planBootWaves / graph helpers', () => {
  const fleet = referenceFleet();
  const gs = fleet.guests.map((g) => ({ vmid: g.vmid, layer: g.layer, dependsOn: fleet.deps.get(g.vmid)! }));

  it('plans the reference fleet in dependency waves', () => {
    expect(planBootWaves(gs)).toEqual({ waves: [[101, 102, 120], [104, 124, 155, 159, 200, 243], [122, 289], [100]], blocked: [] });
  });

  it('leaves out already-healthy guests and reports unreachable ones as blocked', () => {
    const layer2 = gs.filter((g) => g.layer === 2);
    expect(planBootWaves(layer2, [101])).toEqual({ waves: [[155, 159]], blocked: [{ vmid: 124, blockers: [102] }] });
  });

  it('finds exactly the transitive dependents of 159', () => {
    expect(transitiveDependents(gs, 159)).toEqual([100, 122, 289]);
  });
});

describe('LayeredBootMachine', () => {
  it('boots the reference fleet by dependencies, in the critical-path time', async () => {
    const fleet = referenceFleet();
    const r = rig(fleet);
    const actor = createActor(r.machine, { clock: r.clock, input: bootInput(fleet) }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.healthy).toEqual([...fleet.byVmid.keys()].sort((a, b) => a - b));
    expect(out.failed).toEqual([]);
    expect(out.held).toEqual([]);
    // Each guest starts exactly when its last dependency became healthy: no layer barrier.
    for (const s of r.starts) {
      const deps = fleet.deps.get(s.vmid)!;
      expect(s.at).toBe(Math.max(0, ...deps.map((d) => r.healthyAt.get(d)!)));
    }
    expect(r.starts.find((s) => s.vmid === 243)!.at).toBeLessThan(r.healthyAt.get(159)!); // layer 3 before layer 2 is done
    expect(out.durationMs).toBe(criticalPathMs(fleet));
    expect(r.starts.map((s) => s.actionId)).toContain('wf:159:start:0');
    const events = r.progress.map((p) => p.event);
    expect(events[0]).toBe('BOOT.PLANNED');
    expect(events.at(-1)).toBe('BOOT.DONE');
    expect(events.filter((e) => e === 'GUEST.HEALTHY')).toHaveLength(12);
    expect(r.progress.filter((p) => p.event === 'LAYER.DONE').map((p) => p.layer)).toEqual([1, 2, 3, 4]);
  });

  it('never runs more than perNodeConcurrency guests booting on one node', async () => {
    const fleet = generateFleet({ guests: 60, layers: 4, nodes: 3, bootMs: (i) => 500 + (i % 7) * 250 });
    for (const limit of [1, 2]) {
      const r = rig(fleet);
      const actor = createActor(r.machine, { clock: r.clock, input: bootInput(fleet, { perNodeConcurrency: limit }) }).start();
      await runUntil(actor, r.clock);
      expect(actor.getSnapshot().output!.healthy).toHaveLength(60);
      for (const node of fleet.nodes.map((n) => n.name)) {
        const spans = r.starts.filter((s) => fleet.byVmid.get(s.vmid)!.node === node).map((s) => [s.at, r.healthyAt.get(s.vmid)!] as const);
        const edges = spans.flatMap(([a, b]) => [[a, 1], [b, -1]] as const).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
        let running = 0;
        let peak = 0;
        for (const [, d] of edges) peak = Math.max(peak, (running += d));
        expect(peak).toBeLessThanOrEqual(limit);
        expect(peak).toBe(limit);
      }
    }
  });

  it('holds exactly 122, 289 and 100 when 159 stays broken, after its retry', async () => {
    const fleet = referenceFleet();
    const r = rig(fleet, { behaviour: (v) => (v === 159 ? 'fail' : 'ok') });
    const actor = createActor(r.machine, { clock: r.clock, input: bootInput(fleet, { retries: 1 }) }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.failed).toEqual([159]);
    expect(out.held).toEqual([100, 122, 289]);
    expect(out.healthy).toEqual([101, 102, 104, 120, 124, 155, 200, 243]);
    expect(r.starts.filter((s) => s.vmid === 159).map((s) => s.actionId)).toEqual(['wf:159:start:0', 'wf:159:start:1']);
    expect(r.starts.some((s) => [100, 122, 289].includes(s.vmid))).toBe(false);
    expect(r.progress.filter((p) => p.event === 'GUEST.HELD').map((p) => p.vmid).sort()).toEqual([100, 122, 289]);
    expect(r.progress.filter((p) => p.event === 'GUEST.RETRY').map((p) => p.vmid)).toEqual([159]);
    expect(out.reasons['159']).toMatch(/health check failed: health 503/);
  });

  it('times out a hung health check, cancels it, retries, then fails', async () => {
    const fleet = referenceFleet();
    const r = rig(fleet, { behaviour: (v) => (v === 159 ? 'hang' : 'ok') });
    const input = bootInput(fleet, { retries: 1 });
    input.guests.find((g) => g.vmid === 159)!.bootTimeoutMs = 10_000;
    const actor = createActor(r.machine, { clock: r.clock, input }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.failed).toEqual([159]);
    expect(out.reasons['159']).toBe('not healthy within 10000 ms');
    const s159 = r.starts.filter((s) => s.vmid === 159).map((s) => s.at);
    expect(s159).toEqual([3000, 13_000]);
    expect(r.checks.filter((c) => c.vmid === 159).every((c) => c.signal.aborted)).toBe(true);
    expect(r.clock.now()).toBeLessThan(24_000);
  });

  it('retries a failed start and carries on', async () => {
    const fleet = referenceFleet();
    const r = rig(fleet, { behaviour: (v, attempt) => (v === 120 && attempt === 0 ? 'start-fail' : 'ok') });
    const actor = createActor(r.machine, { clock: r.clock, input: bootInput(fleet) }).start();
    await runUntil(actor, r.clock);
    expect(actor.getSnapshot().output!.healthy).toHaveLength(12);
    expect(r.starts.filter((s) => s.vmid === 120).map((s) => s.actionId)).toEqual(['wf:120:start:0', 'wf:120:start:1']);
  });

  it('with retries 0 a single failure is final', async () => {
    const fleet = referenceFleet();
    const r = rig(fleet, { behaviour: (v) => (v === 101 ? 'start-fail' : 'ok') });
    const actor = createActor(r.machine, { clock: r.clock, input: bootInput(fleet, { retries: 0 }) }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.failed).toEqual([101]);
    expect(out.held).toEqual(transitiveDependents(bootInput(fleet).guests, 101));
    expect(out.healthy).toEqual([102, 120]);
  });

  it('does not start guests that are already healthy', async () => {
    const fleet = referenceFleet();
    const r = rig(fleet);
    const actor = createActor(r.machine, { clock: r.clock, input: bootInput(fleet, { alreadyHealthy: [101, 102, 120, 159] }) }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.skipped).toEqual([101, 102, 120, 159]);
    expect(r.starts.map((s) => s.vmid).sort()).toEqual([100, 104, 122, 124, 155, 200, 243, 289]);
    expect(r.starts.find((s) => s.vmid === 289)!.at).toBe(0);
  });

  it('onlyLayer boots one layer and reports missing dependencies as blockers', async () => {
    const fleet = referenceFleet();
    const r = rig(fleet);
    const actor = createActor(r.machine, { clock: r.clock, input: bootInput(fleet, { onlyLayer: 2, alreadyHealthy: [101] }) }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.healthy).toEqual([155, 159]);
    expect(out.held).toEqual([124]);
    expect(out.blocked).toEqual([{ vmid: 124, blockers: [102] }]);
    expect(r.starts.map((s) => s.vmid).sort()).toEqual([155, 159]);
    expect(r.progress.find((p) => p.event === 'GUEST.BLOCKED')).toMatchObject({ vmid: 124, detail: { blockers: [102] } });
  });

  it('dryRun invokes nothing and emits the plan', async () => {
    const fleet = referenceFleet();
    const r = rig(fleet);
    const actor = createActor(r.machine, { clock: r.clock, input: bootInput(fleet, { dryRun: true }) }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(r.starts).toEqual([]);
    expect(r.checks).toEqual([]);
    expect(out.dryRun).toBe(true);
    expect(out.plan.waves).toHaveLength(4);
    expect(r.progress.map((p) => p.event)).toEqual(['BOOT.PLANNED', 'BOOT.DONE']);
  });

  it('persist → restore mid-boot gives the same result without repeating completed starts', async () => {
    const fleet = referenceFleet();
    const opts: Opts = { startMs: 100, behaviour: (v) => (v === 159 ? 'fail' : 'ok') };
    const reference = rig(fleet, opts);
    const whole = createActor(reference.machine, { clock: reference.clock, input: bootInput(fleet) }).start();
    await runUntil(whole, reference.clock);

    const first = rig(fleet, opts);
    const a = createActor(first.machine, { clock: first.clock, input: bootInput(fleet) }).start();
    await runUntil(a, first.clock, () => first.clock.now() >= 3150); // layer-2 starts (3100–3200) are in flight
    const snapshot = JSON.parse(JSON.stringify(a.getPersistedSnapshot()));
    a.stop();
    const completed = new Set(first.starts.filter((s) => s.done !== undefined).map((s) => s.actionId));
    const inFlight = first.starts.filter((s) => s.done === undefined).map((s) => s.actionId);
    expect(completed.size).toBe(3);
    expect(inFlight.length).toBeGreaterThan(0);

    const clock2 = new SimulatedClock();
    clock2.set(first.clock.now());
    const second = rig(fleet, opts, clock2);
    const b = createActor(second.machine, { clock: clock2, snapshot, input: bootInput(fleet) }).start();
    b.send({ type: 'RESUME' });
    await runUntil(b, clock2);
    const out = b.getSnapshot().output!;
    const expected = whole.getSnapshot().output!;
    for (const k of ['healthy', 'failed', 'held', 'skipped'] as const) expect(out[k]).toEqual(expected[k]);
    // Completed starts are never asked again; in-flight ones come back with the same action id.
    expect(second.starts.filter((s) => completed.has(s.actionId))).toEqual([]);
    expect(second.starts.map((s) => s.actionId)).toEqual(expect.arrayContaining(inFlight));
    const all = [...first.starts, ...second.starts].map((s) => s.actionId);
    expect(new Set(all)).toEqual(new Set(reference.starts.map((s) => s.actionId)));
  });

  it('re-arms guest timeouts on RESUME after a restore', async () => {
    const fleet = referenceFleet();
    const opts: Opts = { behaviour: (v) => (v === 101 ? 'hang' : 'ok') };
    const input = bootInput(fleet, { retries: 0 });
    input.guests.find((g) => g.vmid === 101)!.bootTimeoutMs = 10_000;
    const first = rig(fleet, opts);
    const a = createActor(first.machine, { clock: first.clock, input }).start();
    await runUntil(a, first.clock, () => first.clock.now() >= 5000);
    const snapshot = JSON.parse(JSON.stringify(a.getPersistedSnapshot()));
    a.stop();
    const second = rig(fleet, opts);
    const b = createActor(second.machine, { clock: second.clock, snapshot, input }).start();
    b.send({ type: 'RESUME' });
    await runUntil(b, second.clock);
    expect(b.getSnapshot().output!.failed).toEqual([101]);
    expect(second.clock.now()).toBe(10_000); // a full budget again from the restore
  });

  it('CANCEL starts nothing more: the guests in flight finish (no retry), the rest is held with the reason', async () => {
    const fleet = referenceFleet();
    // 101's health check fails once: without the cancel it would be retried
    const r = rig(fleet, { behaviour: (v, attempt) => (v === 101 && attempt === 0 ? 'fail' : 'ok') });
    const actor = createActor(r.machine, { clock: r.clock, input: bootInput(fleet) }).start();
    await runUntil(actor, r.clock, () => r.clock.now() >= 1000); // layer 1 in flight; 101 fails at 3 s
    const inFlight = r.starts.map((s) => s.vmid).filter((v) => !r.healthyAt.has(v));
    actor.send({ type: 'CANCEL', reason: 'cancelled by cli:ann' });
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.cancelled).toBe('cancelled by cli:ann');
    expect(r.starts.filter((s) => s.vmid === 101)).toHaveLength(1); // no retry after the cancel
    expect(out.failed).toEqual([101]);
    expect(out.healthy).toEqual(inFlight.filter((v) => v !== 101).sort((a, b) => a - b));
    expect(new Set(r.starts.map((s) => s.vmid))).toEqual(new Set([...r.healthyAt.keys(), ...inFlight, 101]));
    expect(out.held.length + out.healthy.length + out.failed.length).toBe(12);
    expect(out.held.length).toBeGreaterThan(0);
    for (const v of out.held) expect(out.reasons[v]).toMatch(/^cancelled by cli:ann$|depends on 101/);
    expect(r.progress.at(-1)?.event).toBe('BOOT.DONE');
  });
});
