// GracefulShutdownMachine alone: SimulatedClock and fake shutdown/stop actors.
import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, SimulatedClock, type AnyActorRef } from 'xstate';
import { GracefulShutdownMachine, planShutdownWaves, type Progress, type ShutdownInput } from '../state-machines/mod.ts';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import type { Fleet } from '../fleet/manifest.ts';
import { flush, runUntil } from './helpers/machines.ts';


function shutdownInput(fleet: Fleet, over: Partial<ShutdownInput> = {}): ShutdownInput {
  return {
    workflowId: 'sd',
    perNodeConcurrency: 8,
    allowHardStop: true,
    guests: fleet.guests.map((g) => ({ vmid: g.vmid, node: g.node, layer: g.layer, dependsOn: fleet.deps.get(g.vmid)!, shutdownTimeoutMs: 20_000 })),
    ...over,
  };
}

type Behaviour = 'ok' | 'hang' | 'reject';
function rig(fleet: Fleet, opts: { shutdown?: (vmid: number) => Behaviour; stop?: (vmid: number) => Behaviour } = {}, clock = new SimulatedClock()) {
  const sleep = (ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));
  const shutdowns: { vmid: number; actionId: string; at: number; done?: number; signal: AbortSignal }[] = [];
  const stops: { vmid: number; actionId: string; at: number }[] = [];
  const downAt = new Map<number, number>();
  const progress: Progress[] = [];
  const machine = GracefulShutdownMachine.provide({
    actors: {
      shutdownGuest: fromPromise(async ({ input, signal }) => {
        const rec: (typeof shutdowns)[number] = { vmid: input.vmid, actionId: input.actionId, at: clock.now(), signal };
        shutdowns.push(rec);
        const b = opts.shutdown?.(input.vmid) ?? 'ok';
        if (b === 'hang') return new Promise<never>(() => {});
        await sleep(fleet.byVmid.get(input.vmid)!.shutdownMs);
        if (b === 'reject') throw new Error('VM quit/powerdown failed - got timeout');
        rec.done = clock.now();
        downAt.set(input.vmid, clock.now());
      }),
      stopGuest: fromPromise(async ({ input }) => {
        stops.push({ vmid: input.vmid, actionId: input.actionId, at: clock.now() });
        const b = opts.stop?.(input.vmid) ?? 'ok';
        if (b === 'hang') return new Promise<never>(() => {});
        await sleep(200);
        if (b === 'reject') throw new Error('stop failed');
        downAt.set(input.vmid, clock.now());
      }),
    },
    actions: { emitProgress: (_, p) => void progress.push(p) },
  });
  return { clock, machine, shutdowns, stops, downAt, progress };
}

const dependentsOf = (fleet: Fleet, vmid: number) => fleet.guests.filter((g) => fleet.deps.get(g.vmid)!.includes(vmid)).map((g) => g.vmid);

describe('planShutdownWaves', () => {
  it('is the boot graph reversed', () => {
    const fleet = referenceFleet();
    const gs = fleet.guests.map((g) => ({ vmid: g.vmid, dependsOn: fleet.deps.get(g.vmid)! }));
    expect(planShutdownWaves(gs).waves).toEqual([[100, 104, 124, 200, 243, 289], [102, 120, 122], [155, 159], [101]]);
    expect(planShutdownWaves(gs, [100, 104, 124, 200, 243, 289]).waves[0]).toEqual([102, 120, 122]);
  });
});

describe('GracefulShutdownMachine', () => {
  it('shuts a guest down as soon as everything depending on it is down', async () => {
    const fleet = referenceFleet();
    const r = rig(fleet);
    const actor = createActor(r.machine, { clock: r.clock, input: shutdownInput(fleet) }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.stopped).toHaveLength(12);
    expect(out.hardStopped).toEqual([]);
    for (const s of r.shutdowns) {
      expect(s.at).toBe(Math.max(0, ...dependentsOf(fleet, s.vmid).map((d) => r.downAt.get(d)!)));
    }
    expect(out.order.at(-1)).toBe(101);
    expect(r.shutdowns.find((s) => s.vmid === 159)!.actionId).toBe('sd:159:shutdown');
    expect(r.progress.filter((p) => p.event === 'LAYER.DONE').map((p) => p.layer)).toEqual([4, 3, 2, 1]);
    expect(r.stops).toEqual([]);
  });

  it('respects per-node concurrency', async () => {
    const fleet = referenceFleet();
    const r = rig(fleet);
    const actor = createActor(r.machine, { clock: r.clock, input: shutdownInput(fleet, { perNodeConcurrency: 1 }) }).start();
    await runUntil(actor, r.clock);
    expect(actor.getSnapshot().output!.stopped).toHaveLength(12);
    for (const node of ['node-a', 'node-b', 'node-c']) {
      const spans = r.shutdowns.filter((s) => fleet.byVmid.get(s.vmid)!.node === node).map((s) => [s.at, s.done!]).sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < spans.length; i++) expect(spans[i][0]).toBeGreaterThanOrEqual(spans[i - 1][1]);
    }
  });

  it('without allowHardStop a hung guest is STUCK and its dependencies stay up', async () => {
    const fleet = referenceFleet();
    const r = rig(fleet, { shutdown: (v) => (v === 159 ? 'hang' : 'ok') });
    const actor = createActor(r.machine, { clock: r.clock, input: shutdownInput(fleet, { allowHardStop: false }) }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.stuck).toEqual([159]);
    expect(out.held).toEqual([101]);
    expect(out.stopped).toEqual([100, 102, 104, 120, 122, 124, 155, 200, 243, 289]);
    expect(r.shutdowns.some((s) => s.vmid === 101)).toBe(false);
    expect(r.stops).toEqual([]);
    expect(r.shutdowns.find((s) => s.vmid === 159)!.signal.aborted).toBe(true);
    expect(r.progress.find((p) => p.event === 'GUEST.STUCK')).toMatchObject({ vmid: 159 });
    expect(r.progress.find((p) => p.event === 'GUEST.HELD')).toMatchObject({ vmid: 101, detail: { because: 159 } });
  });

  it('with allowHardStop a timed-out shutdown becomes a stop', async () => {
    const fleet = referenceFleet();
    const r = rig(fleet, { shutdown: (v) => (v === 159 ? 'hang' : 'ok') });
    const actor = createActor(r.machine, { clock: r.clock, input: shutdownInput(fleet) }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.stopped).toHaveLength(12);
    expect(out.hardStopped).toEqual([159]);
    const sd159 = r.shutdowns.find((s) => s.vmid === 159)!;
    expect(r.stops).toEqual([{ vmid: 159, actionId: 'sd:159:stop', at: sd159.at + 20_000 }]);
    expect(r.shutdowns.find((s) => s.vmid === 101)!.at).toBe(sd159.at + 20_000 + 200);
  });

  it('a shutdown that errors falls back to stop at once; a failed stop is STUCK', async () => {
    const fleet = referenceFleet();
    const r = rig(fleet, { shutdown: (v) => (v === 120 ? 'reject' : 'ok'), stop: () => 'reject' });
    const actor = createActor(r.machine, { clock: r.clock, input: shutdownInput(fleet) }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(r.stops.map((s) => s.vmid)).toEqual([120]);
    expect(out.stuck).toEqual([120]);
    expect(out.held).toEqual([]); // 120 depends on nothing
    expect(out.reasons['120']).toMatch(/hard stop failed: stop failed: stop failed/);
    expect(out.stopped).toHaveLength(11);
  });

  it('skips guests already stopped', async () => {
    const fleet = referenceFleet();
    const r = rig(fleet);
    const actor = createActor(r.machine, { clock: r.clock, input: shutdownInput(fleet, { alreadyStopped: [100, 122, 289] }) }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.skipped).toEqual([100, 122, 289]);
    expect(r.shutdowns.map((s) => s.vmid)).not.toContain(122);
    expect(r.shutdowns.find((s) => s.vmid === 159)!.at).toBe(0);
  });

  it('dryRun invokes nothing', async () => {
    const fleet = referenceFleet();
    const r = rig(fleet);
    const actor = createActor(r.machine, { clock: r.clock, input: shutdownInput(fleet, { dryRun: true }) }).start();
    await runUntil(actor, r.clock);
    expect(r.shutdowns).toEqual([]);
    expect(actor.getSnapshot().output!.plan.waves[0]).toEqual([100, 104, 124, 200, 243, 289]);
    expect(r.progress.map((p) => p.event)).toEqual(['SHUTDOWN.PLANNED', 'SHUTDOWN.DONE']);
  });

  it('persist → restore mid-shutdown finishes the same way without repeating completed shutdowns', async () => {
    const fleet = referenceFleet();
    const opts = { shutdown: (v: number) => (v === 155 ? 'hang' as const : 'ok' as const) };
    const reference = rig(fleet, opts);
    const whole = createActor(reference.machine, { clock: reference.clock, input: shutdownInput(fleet) }).start();
    await runUntil(whole, reference.clock);

    const first = rig(fleet, opts);
    const a = createActor(first.machine, { clock: first.clock, input: shutdownInput(fleet) }).start();
    await runUntil(a, first.clock, () => first.clock.now() >= 2000);
    const snapshot = JSON.parse(JSON.stringify(a.getPersistedSnapshot()));
    a.stop();
    const completed = new Set(first.shutdowns.filter((s) => s.done !== undefined).map((s) => s.actionId));
    expect(completed.size).toBeGreaterThan(0);

    const second = rig(fleet, opts);
    const b = createActor(second.machine, { clock: second.clock, snapshot, input: shutdownInput(fleet) }).start();
    b.send({ type: 'RESUME' }); // re-arms 155's shutdown timeout, or it would hang forever
    await runUntil(b, second.clock);
    const out = b.getSnapshot().output!;
    const expected = whole.getSnapshot().output!;
    for (const k of ['stopped', 'hardStopped', 'stuck', 'held', 'skipped'] as const) expect(out[k]).toEqual(expected[k]);
    expect(second.shutdowns.filter((s) => completed.has(s.actionId))).toEqual([]);
    expect(second.stops.map((s) => s.actionId)).toEqual(['sd:155:stop']);
  });

  it('CANCEL shuts nothing more down: the shutdowns in flight finish (with their hard stop), the rest keeps running', async () => {
    const fleet = referenceFleet();
    const r = rig(fleet, { shutdown: (v) => (v === 243 ? 'hang' : 'ok') });
    const actor = createActor(r.machine, { clock: r.clock, input: shutdownInput(fleet) }).start();
    await runUntil(actor, r.clock, () => r.clock.now() >= 1000); // the top layer is shutting down, 243 hangs
    actor.send({ type: 'CANCEL', reason: 'cancelled by cli:ann' });
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.cancelled).toBe('cancelled by cli:ann');
    expect(out.hardStopped).toEqual([243]); // in flight: it finishes, by its hard stop
    const asked = new Set(r.shutdowns.map((x) => x.vmid));
    expect(new Set(out.stopped)).toEqual(asked);
    expect(asked.has(101)).toBe(false);
    expect(out.held).toContain(101);
    for (const v of out.held) expect(out.reasons[v]).toBe('cancelled by cli:ann');
    expect(out.held.length + out.stopped.length).toBe(12);
  });
});
