// How the machines run their per-guest I/O steps (start, health check, recover, shutdown, stop).
//
// One `guestSteps` actor per run, invoked once, runs every step: the machine sends it
// `STEP.RUN` / `STEP.CANCEL` and gets `STEP.STARTED` (dispatched: arm the step's timeout now) and
// `STEP.DONE` / `STEP.FAILED` back, keyed by a step id that
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
  /** Place in a bounded line (StepQueue): higher goes first; default 0. */
  priority?: number;
}
export interface StepCancelCommand { type: 'STEP.CANCEL'; id: string }
export type StepCommand = StepRunCommand | StepCancelCommand;

export interface StepDoneEvent { type: 'STEP.DONE'; id: string; output: unknown }
export interface StepFailedEvent { type: 'STEP.FAILED'; id: string; error: unknown }
/** The step left the line and runs: its timeout starts now. */
export interface StepStartedEvent { type: 'STEP.STARTED'; id: string }

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

/** A bound on the steps in flight, shared by every run of one workflows agent: ~1,000 steps at
 *  once (a 5,000-guest shutdown) made the agent's requests over the bus to the decision agent time
 *  out. A step past the bound waits in line; it is dispatched (and its machine's timeout armed, on
 *  STEP.STARTED) when one in flight ends. The line is ordered by priority, highest first, then
 *  first come first served: a boot gives each start its guest's longest remaining chain of boot
 *  times (list scheduling: when more guests are ready than there are places, the ones the critical
 *  path runs through go first; FIFO let ~150 short-chain starts wait in front of the long ones at
 *  5,000 guests, bench/boot.ts). Steps without a priority are 0. Pure bookkeeping, no I/O;
 *  O(log n) per step (a binary heap; a step that leaves the line is dropped lazily). */
export class StepQueue {
  private active = 0;
  private seq = 0;
  /** Binary heap of waiters: best (highest priority, then oldest) at 0. */
  private readonly heap: Waiter[] = [];
  private waitingCount = 0;
  /** Most steps in flight at once since the queue was made. */
  peak = 0;

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`step limit must be a whole number >= 1, got ${limit}`);
  }

  get inFlight(): number {
    return this.active;
  }

  get queued(): number {
    return this.waitingCount;
  }

  /** Run `go` now if a slot is free, else when one is (best priority first); returns a function
   *  that leaves the line (a no-op once `go` ran). Whoever `go` ran for must call `leave()` once. */
  enter(go: () => void, priority = 0): () => void {
    if (this.active < this.limit && this.waitingCount === 0) {
      this.take();
      go();
      return () => undefined;
    }
    const w: Waiter = { go, priority: Number.isFinite(priority) ? priority : 0, seq: this.seq++, gone: false };
    this.push(w);
    this.waitingCount++;
    return () => {
      if (w.gone) return;
      w.gone = true;
      this.waitingCount--;
    };
  }

  leave(): void {
    this.active--;
    while (this.active < this.limit && this.waitingCount) {
      const next = this.pop()!;
      if (next.gone) continue;
      next.gone = true;
      this.waitingCount--;
      this.take();
      next.go();
    }
    // only dropped waiters left: forget them
    if (!this.waitingCount) this.heap.length = 0;
  }

  private take(): void {
    this.active++;
    if (this.active > this.peak) this.peak = this.active;
  }

  private push(w: Waiter): void {
    const h = this.heap;
    h.push(w);
    let i = h.length - 1;
    while (i > 0) {
      const up = (i - 1) >> 1;
      if (!better(h[i], h[up])) break;
      [h[i], h[up]] = [h[up], h[i]];
      i = up;
    }
  }

  private pop(): Waiter | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length && last) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < h.length && better(h[l], h[best])) best = l;
        if (r < h.length && better(h[r], h[best])) best = r;
        if (best === i) break;
        [h[i], h[best]] = [h[best], h[i]];
        i = best;
      }
    }
    return top;
  }
}

interface Waiter { go: () => void; priority: number; seq: number; gone: boolean }
const better = (a: Waiter, b: Waiter) => a.priority > b.priority || (a.priority === b.priority && a.seq < b.seq);

/** Bounded steps in flight, by their input object: how a running step gives its place back. */
const placeOf = new WeakMap<object, () => void>();

/** A running step that from now on only waits (e.g. a start the policy gate approved, waiting for
 *  the action agent) gives its place in the line to the next step; it keeps running, and its
 *  machine still hears how it ends. `input` is the step's own input object. A no-op for a step
 *  without a place (unbounded, or already given back). */
export function givePlace(input: unknown): void {
  if (typeof input !== 'object' || input === null) return;
  const give = placeOf.get(input);
  placeOf.delete(input);
  give?.();
}

export interface StepsOptions {
  /** Shared bound on steps in flight; none: every step runs at once. */
  queue?: StepQueue;
  /** Steps (by `src`) that never wait in line: passive waits that send nothing (e.g. health). */
  unbounded?: readonly string[];
}

/** The driver, with steps bounded by `o.queue`. The machines declare `guestSteps` (unbounded); the
 *  workflows agent binds a bounded one with `.provide({ actors: { guestSteps: stepsDriver(…) } })`. */
export function stepsDriver(o: StepsOptions = {}) {
  const free = new Set(o.unbounded ?? []);
  return fromCallback<StepCommand>(({ self, sendBack, receive }) => {
    interface Slot { actor?: AnyActorRef; leaveLine?: () => void; bounded: boolean; input?: object }
    const steps = new Map<string, Slot>();
    /** Forget a step; free its place in the queue (in line or in flight). */
    const drop = (id: string, slot: Slot) => {
      if (steps.get(id) !== slot) return;
      steps.delete(id);
      if (!slot.actor) slot.leaveLine?.();
      else if (slot.bounded) release(slot);
    };
    /** Leave the queue once per slot: at the end, or earlier through givePlace(). */
    const release = (slot: Slot) => {
      if (!slot.bounded) return;
      slot.bounded = false;
      if (slot.input) placeOf.delete(slot.input);
      o.queue?.leave();
    };
    const settle = (id: string, slot: Slot, ev: StepDoneEvent | StepFailedEvent) => {
      if (steps.get(id) !== slot) return; // cancelled: a late answer must not reach the machine
      drop(id, slot);
      sendBack(ev);
    };
    const dispatch = (cmd: StepRunCommand, slot: Slot, logic: AnyActorLogic) => {
      if (steps.get(cmd.id) !== slot) {
        if (slot.bounded) o.queue?.leave(); // (cannot happen: a dropped step leaves the line)
        return;
      }
      const a = createActor(logic, { input: cmd.input });
      slot.actor = a;
      if (slot.bounded && typeof cmd.input === 'object' && cmd.input !== null) {
        slot.input = cmd.input;
        placeOf.set(cmd.input, () => release(slot));
      }
      a.subscribe({
        complete: () => settle(cmd.id, slot, { type: 'STEP.DONE', id: cmd.id, output: (a.getSnapshot() as { output?: unknown }).output }),
        error: (error: unknown) => settle(cmd.id, slot, { type: 'STEP.FAILED', id: cmd.id, error }),
      });
      // the machine arms the step's timeout now, not when it asked: time in line is not the step's
      sendBack({ type: 'STEP.STARTED', id: cmd.id });
      a.start();
    };
    receive((cmd) => {
      if (cmd.type === 'STEP.CANCEL') {
        const slot = steps.get(cmd.id);
        if (!slot) return;
        drop(cmd.id, slot);
        slot.actor?.stop();
        return;
      }
      const known = steps.get(cmd.id);
      if (known) {
        // RESUME without a restore: the step is still running (its timeout was re-armed: arm again)
        if (known.actor) sendBack({ type: 'STEP.STARTED', id: cmd.id });
        return;
      }
      const logic = boundActor(self._parent, cmd.src);
      if (!logic) {
        sendBack({ type: 'STEP.FAILED', id: cmd.id, error: new ActorNotBoundError(cmd.src) });
        return;
      }
      const bounded = !!o.queue && !free.has(cmd.src);
      const slot: Slot = { bounded };
      steps.set(cmd.id, slot);
      if (!bounded) dispatch(cmd, slot, logic);
      else slot.leaveLine = o.queue!.enter(() => dispatch(cmd, slot, logic), cmd.priority);
    });
    return () => {
      const all = [...steps.entries()];
      for (const [id, slot] of all) {
        drop(id, slot);
        slot.actor?.stop();
      }
    };
  });
}

/** The unbounded driver the machines declare. */
export const guestSteps = stepsDriver();
