// Driving a machine on a SimulatedClock: let promises settle, advance a step (50 ms), repeat.
import type { AnyActorRef, SimulatedClock } from 'xstate';

export const flush = () => new Promise<void>((r) => setImmediate(r));

export async function runUntil(actor: AnyActorRef, clock: SimulatedClock, until = () => actor.getSnapshot().status !== 'active', maxMs = 600_000, stepMs = 50): Promise<void> {
  await flush();
  while (!until() && clock.now() < maxMs) {
    clock.increment(stepMs);
    await flush();
  }
}
