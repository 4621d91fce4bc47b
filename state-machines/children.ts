// How the machines run their per-guest I/O steps (start, health check, recover, shutdown, stop).
//
// One `guestSteps` actor per run, invoked once, runs every step: the machine sends it
// `STEP.RUN` / `STEP.CANCEL` and gets `STEP.DONE` / `STEP.FAILED` back, keyed by a step id that
// carries the vmid and attempt (`start:159:0`, `shutdown:159`, …). Why not one spawned child per
// step, the obvious XState way: each `spawnChild` and `stopChild` copies the machine's whole
// children map, and each child stop scans every pending delayed event (the per-guest timeouts), so
// a 5,000-guest boot cost O(n²). Profiled (bench/boot-machine.ts, --cpu-prof, 1,000 + 5,000
// guests): xstate's resolveSpawn and resolveStop took 9.0 of the 10.3 s the machines spent. With
// one driver a machine step costs what it changes.
//
// Each step still runs the promise actor the runner bound with `.provide({ actors })` (looked up by
// name on the parent machine), with its input and an abort signal that fires on STEP.CANCEL and
// when the driver stops (the machine left the state that invoked it). The driver keeps no state in
// the persisted snapshot: after a restore, RESUME makes the machine send STEP.RUN again for every
// step that was in flight, with the same input (so the same idempotent actionId).
import { createActor, fromCallback, type AnyActorLogic, type AnyActorRef, type AnyStateMachine } from 'xstate';

export interface StepRunCommand {
  type: 'STEP.RUN';
  id: string;
  /** Name of the promise actor in the machine's `setup({ actors })`. */
  src: string;
  input: unknown;
}
export interface StepCancelCommand { type: 'STEP.CANCEL'; id: string }
export type StepCommand = StepRunCommand | StepCancelCommand;

export interface StepDoneEvent { type: 'STEP.DONE'; id: string; output: unknown }
export interface StepFailedEvent { type: 'STEP.FAILED'; id: string; error: unknown }

/** Id of the driver in every machine that uses it. */
export const STEPS_ID = 'steps';

/** Error thrown when a machine runs with an actor the runner forgot to bind with `.provide()`. */
export class ActorNotBoundError extends Error {
  readonly code = 'HOMEOSTAT_ERR_ACTOR_NOT_BOUND';
  constructor(readonly actor: string) {
    super(`actor "${actor}" is not bound: pass it with machine.provide({ actors: { ${actor} } })`);
    this.name = 'ActorNotBoundError';
  }
}

/** Default body of every I/O actor: fail loudly (and so through the machine's error path). */
export function notBound(actor: string): () => Promise<never> {
  return () => Promise.reject(new ActorNotBoundError(actor));
}

/** The parent machine's actor named `src`, as bound with `.provide({ actors })`. */
function boundActor(parent: AnyActorRef | undefined, src: string): AnyActorLogic | undefined {
  const machine = (parent as { logic?: AnyStateMachine } | undefined)?.logic;
  return machine?.implementations?.actors?.[src] as AnyActorLogic | undefined;
}

export const guestSteps = fromCallback<StepCommand>(({ self, sendBack, receive }) => {
  const running = new Map<string, AnyActorRef>();
  const settle = (id: string, a: AnyActorRef, ev: StepDoneEvent | StepFailedEvent) => {
    if (running.get(id) !== a) return; // cancelled: a late answer must not reach the machine
    running.delete(id);
    sendBack(ev);
  };
  receive((cmd) => {
    if (cmd.type === 'STEP.CANCEL') {
      const a = running.get(cmd.id);
      running.delete(cmd.id);
      a?.stop();
      return;
    }
    if (running.has(cmd.id)) return; // RESUME without a restore: the step is still running
    const logic = boundActor(self._parent, cmd.src);
    if (!logic) {
      sendBack({ type: 'STEP.FAILED', id: cmd.id, error: new ActorNotBoundError(cmd.src) });
      return;
    }
    const a = createActor(logic, { input: cmd.input });
    running.set(cmd.id, a);
    a.subscribe({
      complete: () => settle(cmd.id, a, { type: 'STEP.DONE', id: cmd.id, output: (a.getSnapshot() as { output?: unknown }).output }),
      error: (error: unknown) => settle(cmd.id, a, { type: 'STEP.FAILED', id: cmd.id, error }),
    });
    a.start();
  });
  return () => {
    const all = [...running.values()];
    running.clear();
    for (const a of all) a.stop();
  };
});
