// ChaosExperimentMachine alone: SimulatedClock and fake actors. Whatever happens, rollbacks run.
import { describe, expect, it } from 'vitest';
import { createActor, fromCallback, fromPromise, SimulatedClock, type AnyActorRef } from 'xstate';
import { ChaosExperimentMachine, type ChaosExperimentInput, type ChaosInput, type Progress } from '../state-machines/mod.ts';
import { findExperiment } from '../workflows/experiment.ts';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { flush, runUntil as runUntilBase } from './helpers/machines.ts';

const runUntil = (actor: AnyActorRef, clock: SimulatedClock, until = () => actor.getSnapshot().status !== 'active') => runUntilBase(actor, clock, until, 3_600_000, 250);

const killLayer1: ChaosExperimentInput = {
  name: 'kill-layer1',
  steadyState: [{ probe: 'all-guests-healthy' }],
  method: [{ fault: 'crash', target: 101 }],
  rollbacks: [{ action: 'clear-faults' }, { action: 'start', vmid: 101 }],
  abort: { timeoutMs: 600_000, maxGuestsDown: 6 },
  slo: { mttrMs: 60_000 },
};

const input = (over: Partial<ChaosInput> = {}, experiment: ChaosExperimentInput = killLayer1): ChaosInput => ({ workflowId: 'cx', experiment, ...over });

interface FakeOpts {
  steadyBefore?: boolean;
  steadyAfter?: boolean;
  injectFails?: boolean;
  injectMs?: number;
  /** Simulated ms from injection to heal; undefined = never heals. */
  healMs?: number | undefined;
  abortAfterMs?: number;
  rollbackFails?: boolean;
}

function rig(opts: FakeOpts = {}, clock = new SimulatedClock()) {
  const sleep = (ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));
  const calls: { actor: string; at: number; input?: unknown; signal?: AbortSignal; done?: boolean }[] = [];
  const cleanups: string[] = [];
  const progress: Progress[] = [];
  const healMs = 'healMs' in opts ? opts.healMs : 20_000;
  const machine = ChaosExperimentMachine.provide({
    actors: {
      checkSteadyState: fromPromise(async ({ input }) => {
        calls.push({ actor: `checkSteadyState:${input.phase}`, at: clock.now() });
        const ok = input.phase === 'before' ? opts.steadyBefore ?? true : opts.steadyAfter ?? true;
        return ok ? { ok } : { ok, failures: ['101 is down'] };
      }),
      injectFault: fromPromise(async ({ input, signal }) => {
        const rec: (typeof calls)[number] = { actor: 'injectFault', at: clock.now(), input, signal };
        calls.push(rec);
        if (opts.injectMs) await sleep(opts.injectMs);
        if (opts.injectFails) throw new Error('sim said 500');
        rec.done = true;
        return { at: clock.now(), faultId: `fault-${input.index}` };
      }),
      watchHeal: fromCallback(({ input, sendBack }) => {
        calls.push({ actor: 'watchHeal', at: clock.now(), input });
        const timers = healMs === undefined ? [] : input.faults.map((f) => clock.setTimeout(() => sendBack({ type: 'HEAL.OBSERVED', index: f.index, at: clock.now() }), Math.max(0, f.injectedAt! + healMs - clock.now())));
        return () => {
          cleanups.push('watchHeal');
          timers.forEach((t) => clock.clearTimeout(t));
        };
      }),
      watchAbort: fromCallback(({ sendBack }) => {
        const t = opts.abortAfterMs === undefined ? undefined : clock.setTimeout(() => sendBack({ type: 'ABORT', reason: 'more than 6 guests down' }), opts.abortAfterMs);
        return () => {
          cleanups.push('watchAbort');
          if (t !== undefined) clock.clearTimeout(t);
        };
      }),
      runRollbacks: fromPromise(async ({ input }) => {
        calls.push({ actor: 'runRollbacks', at: clock.now(), input });
        await sleep(1000);
        if (opts.rollbackFails) throw new Error('start 101 failed');
      }),
    },
    actions: { emitProgress: (_, p) => void progress.push(p) },
  });
  return { clock, machine, calls, cleanups, progress, actors: () => calls.map((c) => c.actor) };
}

describe('ChaosExperimentMachine', () => {
  it('passes: steady state, inject, heal within SLO, steady state, rollback, report', async () => {
    const r = rig();
    const actor = createActor(r.machine, { clock: r.clock, input: input() }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out).toMatchObject({ passed: true, aborted: false, steadyStateBefore: true, steadyStateAfter: true, rollback: { ran: true, ok: true } });
    expect(out.faults).toEqual([{ index: 0, kind: 'crash', target: 101, rep: 0, expect: 'healed', injectedAt: 0, healedAt: 20_000, mttrMs: 20_000, sloMs: 60_000, withinSlo: true }]);
    expect(r.actors()).toEqual(['checkSteadyState:before', 'injectFault', 'watchHeal', 'checkSteadyState:after', 'runRollbacks']);
    const rb = r.calls.find((c) => c.actor === 'runRollbacks')!.input as { actionId: string; faults: { faultId?: string }[] };
    expect(rb.actionId).toBe('cx:rollback');
    expect(rb.faults[0].faultId).toBe('fault-0');
    expect((r.calls.find((c) => c.actor === 'injectFault')!.input as { actionId: string }).actionId).toBe('cx:fault:0');
    expect(r.cleanups).toEqual(expect.arrayContaining(['watchHeal', 'watchAbort']));
    expect(r.progress.map((p) => p.event)).toEqual([
      'CHAOS.PLANNED', 'STEADY_STATE.OK', 'FAULT.INJECTED', 'FAULT.HEALED', 'STEADY_STATE.OK', 'ROLLBACK.STARTED', 'ROLLBACK.DONE', 'CHAOS.REPORT',
    ]);
  });

  it('fails (not aborts) when the heal misses the SLO, and still rolls back', async () => {
    const r = rig({ healMs: 90_000 });
    const actor = createActor(r.machine, { clock: r.clock, input: input() }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.passed).toBe(false);
    expect(out.aborted).toBe(false);
    expect(out.faults[0]).toMatchObject({ mttrMs: 90_000, withinSlo: false });
    expect(r.actors()).toContain('runRollbacks');
  });

  it('gives up after SLO × healTimeoutFactor without a heal, and rolls back', async () => {
    const r = rig({ healMs: undefined });
    const actor = createActor(r.machine, { clock: r.clock, input: input({ healTimeoutFactor: 3 }) }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.reason).toBe('not healed within 180000 ms (SLO 60000 ms)');
    expect(out.passed).toBe(false);
    expect(r.calls.find((c) => c.actor === 'runRollbacks')!.at).toBe(180_000);
    expect(r.actors()).not.toContain('checkSteadyState:after');
    expect(r.cleanups).toContain('watchHeal');
  });

  it('an ABORT event while observing rolls back at once', async () => {
    const r = rig({ healMs: undefined });
    const actor = createActor(r.machine, { clock: r.clock, input: input() }).start();
    await runUntil(actor, r.clock, () => r.clock.now() >= 5000);
    actor.send({ type: 'ABORT', reason: 'operator pressed stop' });
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out).toMatchObject({ passed: false, aborted: true, reason: 'operator pressed stop', rollback: { ran: true, ok: true } });
    expect(r.calls.find((c) => c.actor === 'runRollbacks')!.at).toBe(5000);
  });

  it('an abort condition (watchAbort) rolls back', async () => {
    const r = rig({ healMs: undefined, abortAfterMs: 7000 });
    const actor = createActor(r.machine, { clock: r.clock, input: input() }).start();
    await runUntil(actor, r.clock);
    expect(actor.getSnapshot().output!).toMatchObject({ aborted: true, reason: 'more than 6 guests down', rollback: { ran: true } });
  });

  it('the experiment timeout rolls back', async () => {
    const r = rig({ healMs: undefined });
    const slow = { ...killLayer1, abort: { timeoutMs: 30_000 } };
    const actor = createActor(r.machine, { clock: r.clock, input: input({}, slow) }).start();
    await runUntil(actor, r.clock);
    expect(actor.getSnapshot().output!).toMatchObject({ aborted: true, reason: 'experiment timed out' });
    expect(r.calls.find((c) => c.actor === 'runRollbacks')!.at).toBe(30_000);
  });

  it('an injection error rolls back', async () => {
    const r = rig({ injectFails: true });
    const actor = createActor(r.machine, { clock: r.clock, input: input() }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out).toMatchObject({ aborted: true, passed: false, rollback: { ran: true, ok: true } });
    expect(out.reason).toMatch(/injection failed: sim said 500/);
    expect(out.faults[0].error).toBe('sim said 500');
    expect(r.actors()).toEqual(['checkSteadyState:before', 'injectFault', 'runRollbacks']);
  });

  it('no steady state before: nothing is injected, rollbacks still run', async () => {
    const r = rig({ steadyBefore: false });
    const actor = createActor(r.machine, { clock: r.clock, input: input() }).start();
    await runUntil(actor, r.clock);
    expect(actor.getSnapshot().output!).toMatchObject({ aborted: true, steadyStateBefore: false, reason: 'steady state did not hold before injection' });
    expect(r.actors()).toEqual(['checkSteadyState:before', 'runRollbacks']);
  });

  it('steady state not restored: fails, rolls back', async () => {
    const r = rig({ steadyAfter: false });
    const actor = createActor(r.machine, { clock: r.clock, input: input() }).start();
    await runUntil(actor, r.clock);
    expect(actor.getSnapshot().output!).toMatchObject({ passed: false, aborted: false, steadyStateAfter: false, rollback: { ok: true } });
  });

  it('a failed rollback is reported and fails the experiment', async () => {
    const r = rig({ rollbackFails: true });
    const actor = createActor(r.machine, { clock: r.clock, input: input() }).start();
    await runUntil(actor, r.clock);
    expect(actor.getSnapshot().output!).toMatchObject({ passed: false, rollback: { ran: true, ok: false, error: 'start 101 failed' } });
    expect(r.progress.map((p) => p.event)).toContain('ROLLBACK.FAILED');
  });

  it('dryRun invokes nothing', async () => {
    const r = rig();
    const actor = createActor(r.machine, { clock: r.clock, input: input({ dryRun: true }) }).start();
    await runUntil(actor, r.clock);
    expect(r.calls).toEqual([]);
    expect(actor.getSnapshot().output!).toMatchObject({ dryRun: true, passed: false, rollback: { ran: false } });
    expect(r.progress.map((p) => p.event)).toEqual(['CHAOS.PLANNED']);
  });

  it('repeats are spaced by intervalMs and only the last one waits for a heal; expect none waits for nothing', async () => {
    const r = rig({ healMs: 5000 });
    const exp: ChaosExperimentInput = {
      ...killLayer1,
      method: [{ fault: 'api-slow', target: '*', expect: 'none' }, { fault: 'crash', target: 155, repeat: 3, intervalMs: 2000 }],
    };
    const actor = createActor(r.machine, { clock: r.clock, input: input({}, exp) }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(r.calls.filter((c) => c.actor === 'injectFault').map((c) => c.at)).toEqual([0, 0, 2000, 4000]);
    expect((r.calls.find((c) => c.actor === 'watchHeal')!.input as { faults: { index: number }[] }).faults.map((f) => f.index)).toEqual([3]);
    expect(out.passed).toBe(true);
    expect(out.faults[3]).toMatchObject({ injectedAt: 4000, healedAt: 9000, mttrMs: 5000 });
  });

  it('accepts a shipped experiment file as input', async () => {
    const exp = findExperiment('kill-layer1', referenceFleet());
    const r = rig();
    const actor = createActor(r.machine, { clock: r.clock, input: { workflowId: 'cx', experiment: exp } }).start();
    await runUntil(actor, r.clock);
    expect(actor.getSnapshot().output!.passed).toBe(true);
  });

  it('restored mid-observation, RESUME goes straight to rollback', async () => {
    const first = rig({ healMs: undefined });
    const a = createActor(first.machine, { clock: first.clock, input: input() }).start();
    await runUntil(a, first.clock, () => first.clock.now() >= 10_000);
    expect(a.getSnapshot().matches({ running: 'observing' })).toBe(true);
    const snapshot = JSON.parse(JSON.stringify(a.getPersistedSnapshot()));
    a.stop();
    const second = rig({ healMs: undefined });
    const b = createActor(second.machine, { clock: second.clock, snapshot, input: input() }).start();
    b.send({ type: 'RESUME' });
    await runUntil(b, second.clock);
    const out = b.getSnapshot().output!;
    expect(out).toMatchObject({ aborted: true, reason: 'the runner restarted mid-experiment', rollback: { ran: true, ok: true } });
    expect(out.faults[0].injectedAt).toBe(0);
    expect(second.calls.filter((c) => c.actor === 'injectFault')).toEqual([]);
    expect(second.calls.filter((c) => c.actor === 'runRollbacks')).toHaveLength(1);
  });

  it('restored mid-injection, RESUME cancels the re-run injection and rolls back', async () => {
    const first = rig({ injectMs: 3000 });
    const a = createActor(first.machine, { clock: first.clock, input: input() }).start();
    await runUntil(a, first.clock, () => first.clock.now() >= 1000);
    const snapshot = JSON.parse(JSON.stringify(a.getPersistedSnapshot()));
    a.stop();
    const second = rig({ injectMs: 3000 });
    const b = createActor(second.machine, { clock: second.clock, snapshot, input: input() }).start();
    b.send({ type: 'RESUME' });
    await runUntil(b, second.clock);
    // xstate re-invokes the in-flight injection on restore (same action id, so the runner dedups it);
    // RESUME stops it before it can report, and the rollback sees the fault as not injected.
    const reinjected = second.calls.filter((c) => c.actor === 'injectFault');
    expect(reinjected.map((c) => (c.input as { actionId: string }).actionId)).toEqual(['cx:fault:0']);
    expect(reinjected[0].signal!.aborted).toBe(true);
    expect(b.getSnapshot().output!).toMatchObject({ aborted: true, rollback: { ran: true } });
    expect(second.actors()).toEqual(['injectFault', 'runRollbacks']);
  });

  it('restored mid-rollback, the rollback runs again with the same action id', async () => {
    const first = rig({ steadyBefore: false });
    const a = createActor(first.machine, { clock: first.clock, input: input() }).start();
    await runUntil(a, first.clock, () => a.getSnapshot().matches('rollingBack'));
    const snapshot = JSON.parse(JSON.stringify(a.getPersistedSnapshot()));
    a.stop();
    const second = rig();
    const b = createActor(second.machine, { clock: second.clock, snapshot, input: input() }).start();
    b.send({ type: 'RESUME' });
    await runUntil(b, second.clock);
    expect(second.calls.map((c) => [c.actor, (c.input as { actionId?: string } | undefined)?.actionId])).toEqual([['runRollbacks', 'cx:rollback']]);
    expect(b.getSnapshot().output!).toMatchObject({ aborted: true, rollback: { ran: true, ok: true } });
  });
});
