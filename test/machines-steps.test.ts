// The bounded step driver (stepsDriver with a StepQueue) under a machine: steps past the bound wait
// in line, first come first served, and a step's timeout starts when it leaves the line.
import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, SimulatedClock } from 'xstate';
import { GracefulShutdownMachine, StepQueue, stepsDriver, type ShutdownGuestActorInput, type ShutdownSummary, type StopOutput } from '../state-machines/mod.ts';
import { flush, runUntil } from './helpers/machines.ts';

describe('bounded steps', () => {
  it('a step waiting in line does not time out; steps run in the order asked, never more than the bound', async () => {
    const clock = new SimulatedClock();
    const queue = new StepQueue(1);
    const order: number[] = [];
    const release = new Map<number, () => void>();
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
});
