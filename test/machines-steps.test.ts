// The bounded step driver (stepsDriver with a StepQueue) under a machine: steps past the bound wait
// in line, first come first served, and a step's timeout starts when it leaves the line.
import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, SimulatedClock } from 'xstate';
import { givePlace, GracefulShutdownMachine, LayeredBootMachine, StepQueue, stepsDriver, type BootSummary, type ShutdownGuestActorInput, type ShutdownSummary, type StartGuestInput, type StopOutput, type WaitHealthyInput, type WaitHealthyOutput } from '../state-machines/mod.ts';
import { flush, runUntil } from './helpers/machines.ts';

/** One step place, a simulated clock, the order steps began in, and how to end each step. */
function stepRig() {
  return { clock: new SimulatedClock(), queue: new StepQueue(1), order: [] as number[], release: new Map<number, () => void>() };
}

/** A boot machine with one step place; each start waits until the test releases it. */
function bootRig(onStart: (input: StartGuestInput) => void = () => undefined) {
  const { clock, queue, order, release } = stepRig();
  const machine = LayeredBootMachine.provide({
    actors: {
      // health checks send nothing: they do not wait in line (as in the workflows agent)
      guestSteps: stepsDriver({ queue, unbounded: ['waitHealthy'] }),
      startGuest: fromPromise<unknown, StartGuestInput>(({ input }) => {
        order.push(input.vmid);
        onStart(input);
        return new Promise<void>((r) => release.set(input.vmid, r));
      }),
      waitHealthy: fromPromise<WaitHealthyOutput, WaitHealthyInput>(async () => ({ at: clock.now() })),
    },
  });
  return { clock, queue, order, release, machine };
}

describe('bounded steps', () => {
  it('a step waiting in line does not time out; steps run in the order asked, never more than the bound', async () => {
    const { clock, queue, order, release } = stepRig();
    const machine = GracefulShutdownMachine.provide({
      actors: {
        guestSteps: stepsDriver({ queue }),
        shutdownGuest: fromPromise<StopOutput, ShutdownGuestActorInput>(({ input }) => {
          order.push(input.vmid);
          return new Promise<void>((r) => release.set(input.vmid, r));
        }),
      },
    });
    // 1 is asked first (vmid order) with a long budget; 2 and 3 wait behind it with a short one
    const guests = [
      { vmid: 1, node: 'a', layer: 1, dependsOn: [], shutdownTimeoutMs: 600_000 },
      { vmid: 2, node: 'b', layer: 1, dependsOn: [], shutdownTimeoutMs: 1000 },
      { vmid: 3, node: 'c', layer: 1, dependsOn: [], shutdownTimeoutMs: 1000 },
    ];
    const actor = createActor(machine, { clock, input: { workflowId: 'w', guests, perNodeConcurrency: 5, allowHardStop: false } }).start();
    await flush();
    expect(order).toEqual([1]);
    expect(queue.queued).toBe(2);
    // far past 2's and 3's budgets while they wait: neither is given up on
    for (let i = 0; i < 100; i++) {
      clock.increment(100);
      await flush();
    }
    expect(order).toEqual([1]);
    release.get(1)!();
    await runUntil(actor, clock, () => order.length === 2, 10_000, 10);
    expect(order).toEqual([1, 2]);
    expect(queue.inFlight).toBe(1);
    release.get(2)!();
    await runUntil(actor, clock, () => order.length === 3, 10_000, 10);
    release.get(3)!();
    await runUntil(actor, clock);
    const out = actor.getSnapshot().output as ShutdownSummary;
    expect(out.stuck).toEqual([]);
    expect(out.stopped).toEqual([1, 2, 3]);
    expect(queue.peak).toBe(1);
    expect(queue.inFlight).toBe(0);
  });

  it('a dispatched step still times out on its own budget and frees its place', async () => {
    const clock = new SimulatedClock();
    const queue = new StepQueue(1);
    const order: number[] = [];
    const machine = GracefulShutdownMachine.provide({
      actors: {
        guestSteps: stepsDriver({ queue }),
        shutdownGuest: fromPromise<StopOutput, ShutdownGuestActorInput>(({ input }) => {
          order.push(input.vmid);
          return input.vmid === 1 ? new Promise<void>(() => undefined) : Promise.resolve();
        }),
      },
    });
    const guests = [1, 2].map((vmid) => ({ vmid, node: 'a', layer: 1, dependsOn: [], shutdownTimeoutMs: 1000 }));
    const actor = createActor(machine, { clock, input: { workflowId: 'w', guests, perNodeConcurrency: 5, allowHardStop: false } }).start();
    await runUntil(actor, clock);
    const out = actor.getSnapshot().output as ShutdownSummary;
    expect(out.stuck).toEqual([1]);
    expect(out.stopped).toEqual([2]);
    expect(order).toEqual([1, 2]);
    expect(queue.inFlight).toBe(0);
  });

  it('the line is ordered by priority, highest first, then first come first served; a step that left the line is skipped', () => {
    const queue = new StepQueue(1);
    const ran: string[] = [];
    queue.enter(() => ran.push('first'));
    queue.enter(() => ran.push('low'), 1);
    queue.enter(() => ran.push('plain'));
    queue.enter(() => ran.push('high-a'), 5);
    const leaveLine = queue.enter(() => ran.push('gone'), 9);
    queue.enter(() => ran.push('high-b'), 5);
    expect(queue.queued).toBe(5);
    leaveLine();
    expect(queue.queued).toBe(4);
    for (let i = 0; i < 5; i++) queue.leave();
    expect(ran).toEqual(['first', 'high-a', 'high-b', 'low', 'plain']);
    expect(queue.queued).toBe(0);
    expect(queue.inFlight).toBe(0);
    expect(queue.peak).toBe(1);
  });

  it('a boot gives the start on the longest remaining chain the next place, ahead of shorter chains that asked before it', async () => {
    const { clock, queue, order, release, machine } = bootRig();
    // 1 → 4 → 5 is the long chain (3 × 8 s); 2 and 3 boot in 1 s and nothing waits for them
    const g = (vmid: number, dependsOn: number[], expectedBootMs: number, layer = dependsOn.length ? 2 : 1) =>
      ({ vmid, node: 'a', layer, dependsOn, bootTimeoutMs: 600_000, expectedBootMs });
    const guests = [g(1, [], 8000), g(2, [], 1000), g(3, [], 1000), g(4, [1], 8000), g(5, [4], 8000, 3)];
    const actor = createActor(machine, { clock, input: { workflowId: 'w', guests, perNodeConcurrency: 10, retries: 0, startedAt: 0 } }).start();
    await flush();
    expect(order).toEqual([1]);
    release.get(1)!(); // 1 started, then healthy: 4 is ready while 3 still waits in line behind 2
    await runUntil(actor, clock, () => order.length === 2, 10_000, 10);
    await runUntil(actor, clock, () => queue.queued === 2, 10_000, 10);
    release.get(2)!();
    await runUntil(actor, clock, () => order.length === 3, 10_000, 10);
    expect(order).toEqual([1, 2, 4]); // FIFO would have run 3 first
    // the rest as they come
    await runUntil(actor, clock, () => {
      for (const [v, r] of release) {
        release.delete(v);
        r();
      }
      return actor.getSnapshot().status !== 'active';
    }, 10_000, 10);
    expect(order.sort()).toEqual([1, 2, 3, 4, 5]);
    expect((actor.getSnapshot().output as BootSummary).healthy).toEqual([1, 2, 3, 4, 5]);
    expect(queue.inFlight).toBe(0);
  });

  it('a running step that gives its place back lets the next one run, and still reports its end (once)', async () => {
    const { clock, queue, order, release, machine } = bootRig((input) => {
      givePlace(input); // e.g. approved: from now on it only waits
      givePlace(input); // twice is once
    });
    const guests = [1, 2, 3].map((vmid) => ({ vmid, node: 'a', layer: 1, dependsOn: [], bootTimeoutMs: 600_000, expectedBootMs: 1000 }));
    const actor = createActor(machine, { clock, input: { workflowId: 'w', guests, perNodeConcurrency: 10, retries: 0, startedAt: 0 } }).start();
    await runUntil(actor, clock, () => order.length === 3, 10_000, 10);
    expect(order).toEqual([1, 2, 3]); // all three running with one place
    expect(queue.inFlight).toBe(0);
    expect(queue.peak).toBe(1);
    for (const r of release.values()) r();
    await runUntil(actor, clock);
    expect((actor.getSnapshot().output as BootSummary).healthy).toEqual([1, 2, 3]);
    expect(queue.inFlight).toBe(0); // nobody left the line twice
    expect(queue.queued).toBe(0);
  });
});
