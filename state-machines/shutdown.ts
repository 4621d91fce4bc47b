// GracefulShutdownMachine: the boot graph in reverse. A guest is shut down only once every guest
// that depends on it is down, within `perNodeConcurrency` per node. A graceful `shutdownGuest`
// that fails or outlives its timeout falls back to `stopGuest` only when `allowHardStop`; otherwise
// (or when the hard stop fails too) the guest is STUCK and everything it depends on is held up,
// because a still-running guest must keep its dependencies.
//
// Steps run through the one `guestSteps` driver (children.ts), as `shutdown:<vmid>` and
// `stop:<vmid>`. Like the boot pipeline, a step costs what it changes (table.ts): it used to
// structuredClone the whole context and rescan every guest on every event, 24 s of CPU for 5,000.
import { setup, fromPromise } from 'xstate';
import { dependentsIndex, planShutdownWaves, type BootPlan } from './graph.ts';
import { bucketsOf, readyQueues, rows, TableDraft, type Buckets, type PhaseCounters, type PhaseRules } from './table.ts';
import { errorText, type Progress } from './progress.ts';
import { guestSteps, notBound, STEPS_ID, type StepDoneEvent, type StepFailedEvent, type StepStartedEvent } from './children.ts';

export interface ShutdownGuestInput {
  vmid: number;
  node: string;
  layer: number;
  dependsOn: number[];
  /** Graceful shutdown budget; the same budget again for a hard stop. */
  shutdownTimeoutMs: number;
}

export interface ShutdownInput {
  workflowId: string;
  guests: ShutdownGuestInput[];
  alreadyStopped?: number[];
  perNodeConcurrency: number;
  allowHardStop: boolean;
  dryRun?: boolean;
}

export interface ShutdownGuestActorInput { workflowId: string; vmid: number; node: string; timeoutSec: number; actionId: string }
export interface StopGuestActorInput { workflowId: string; vmid: number; node: string; actionId: string }
/** Both actors resolve once PVE reports the guest stopped. */
export type StopOutput = { at?: number } | void;

export const SHUTDOWN_EVENTS = [
  'SHUTDOWN.PLANNED', 'GUEST.SKIPPED', 'GUEST.STOPPING', 'GUEST.STOPPED', 'GUEST.HARD_STOP', 'GUEST.STUCK',
  'GUEST.HELD', 'LAYER.DONE', 'SHUTDOWN.DONE',
] as const;
export type ShutdownEventName = (typeof SHUTDOWN_EVENTS)[number];

type Phase = 'running' | 'stopping' | 'killing' | 'stopped' | 'stuck' | 'held' | 'skipped';
interface Guest extends ShutdownGuestInput {
  phase: Phase;
  hard?: boolean;
  reason?: string;
  /** Guests depending on this one that are not down yet (counted down as they stop). */
  waiting: number;
  /** Position in the order shutdowns were requested. */
  seq?: number;
}

interface ShutdownContext extends PhaseCounters {
  workflowId: string;
  dryRun: boolean;
  allowHardStop: boolean;
  perNodeConcurrency: number;
  plan: BootPlan;
  /** Layer → its guests (built once). */
  layers: Record<string, number[]>;
  guests: Buckets<Guest>;
  /** Running guests with nothing depending on them left up, per node, best first. */
  ready: Record<string, number[]>;
  requested: number;
  layersDone: number[];
  cancelled?: string;
}

export interface ShutdownSummary {
  workflowId: string;
  dryRun: boolean;
  plan: BootPlan;
  stopped: number[];
  /** Subset of `stopped` that needed a hard stop. */
  hardStopped: number[];
  stuck: number[];
  held: number[];
  skipped: number[];
  reasons: Record<string, string>;
  /** Order in which shutdowns were requested. */
  order: number[];
  /** Set when the run was cancelled (the reason). */
  cancelled?: string;
}

export type ShutdownEvent =
  | { type: 'RESUME' }
  /** `homeostat cancel`: shut nothing more down; what is in flight finishes. */
  | { type: 'CANCEL'; reason: string }
  | { type: 'GUEST.TIMEOUT'; vmid: number; phase: 'stopping' | 'killing' }
  | StepDoneEvent
  | StepFailedEvent
  | StepStartedEvent;

export const shutdownActionId = (workflowId: string, vmid: number, verb: 'shutdown' | 'stop') => `${workflowId}:${vmid}:${verb}`;
const timer = (vmid: number) => `timeout:${vmid}`;

type Cmd =
  | { do: 'emit'; progress: Progress<ShutdownEventName> }
  | { do: 'run'; verb: 'shutdown' | 'stop'; guest: Guest }
  | { do: 'cancel'; id: string }
  | { do: 'arm'; vmid: number; phase: 'stopping' | 'killing'; delayMs: number }
  | { do: 'disarm'; vmid: number };

const active = (ph: Phase) => ph === 'stopping' || ph === 'killing';
/** Ready order: higher layer first, then vmid. */
const before = (a: Guest, b: Guest) => b.layer - a.layer || a.vmid - b.vmid;
/** A guest stays `running` until its dependents are down; one that stops lets its dependencies go. */
const rules: PhaseRules<Guest, Phase> = { queued: 'running', inFlight: active, releases: (ph) => ph === 'stopped', unblocks: (g) => g.dependsOn };

/** One step on the context: copy-on-write of what it touches, and the commands it produces. */
class Step {
  readonly c: ShutdownContext;
  readonly t: TableDraft<Guest>;
  constructor(old: ShutdownContext, readonly out: Cmd[]) {
    this.t = new TableDraft(old.guests, old.ready, before, rules);
    this.c = { ...old, guests: this.t.buckets, ready: this.t.ready, busy: { ...old.busy }, open: { ...old.open }, layersDone: [...old.layersDone] };
  }

  get(vmid: number): Guest | undefined {
    return this.t.get(vmid);
  }

  setPhase(vmid: number, phase: Phase): Guest {
    return this.t.setPhase(this.c, vmid, phase);
  }

  emit(event: ShutdownEventName, g: Guest, detail?: Record<string, unknown>): void {
    this.out.push({ do: 'emit', progress: { event, vmid: g.vmid, node: g.node, layer: g.layer, ...(detail ? { detail } : {}) } });
  }
}

function schedule(s: Step): void {
  const c = s.c;
  for (const pick of s.t.picks((node) => c.perNodeConcurrency - (c.busy[node] ?? 0))) {
    const g = s.setPhase(pick.vmid, 'stopping');
    g.seq = c.requested++;
    s.emit('GUEST.STOPPING', g);
    // its timeout is armed on STEP.STARTED: a step may wait in the driver's line first
    s.out.push({ do: 'run', verb: 'shutdown', guest: { ...g } });
  }
  // Nothing in flight and nothing ready: only a dependency cycle can leave guests running here.
  if (c.inFlight === 0 && c.queued > 0) {
    for (const g0 of rows(c.guests)) {
      if (g0.phase !== 'running') continue;
      const g = s.setPhase(g0.vmid, 'held');
      g.reason = 'dependency cycle';
      s.emit('GUEST.HELD', g, { reason: g.reason });
    }
  }
  for (const layer of [...s.t.closed].sort((a, b) => b - a)) {
    if (c.layersDone.includes(layer)) continue;
    c.layersDone.push(layer);
    const gs = (c.layers[layer] ?? []).map((v) => s.get(v)!);
    const pick = (ph: Phase) => gs.filter((g) => g.phase === ph).map((g) => g.vmid);
    s.out.push({ do: 'emit', progress: { event: 'LAYER.DONE', layer, detail: { stopped: pick('stopped'), stuck: pick('stuck'), held: pick('held'), skipped: pick('skipped') } } });
  }
  s.t.closed.clear();
}

/** Cancelled: every guest not asked to shut down yet stays running (held, with the reason); the
 *  shutdowns in flight finish (with their hard stop when allowed). */
function cancel(s: Step, reason: string): void {
  if (s.c.cancelled) return;
  s.c.cancelled = reason;
  for (const g0 of rows(s.c.guests)) {
    if (g0.phase !== 'running') continue;
    const g = s.setPhase(g0.vmid, 'held');
    g.reason = reason;
    s.emit('GUEST.HELD', g, { reason });
  }
  schedule(s);
}

function stopped(s: Step, vmid: number): void {
  const g0 = s.get(vmid);
  if (!g0 || !active(g0.phase)) return;
  const hard = g0.phase === 'killing';
  const g = s.setPhase(vmid, 'stopped');
  g.hard = hard;
  s.out.push({ do: 'disarm', vmid });
  s.emit('GUEST.STOPPED', g, { hard });
  schedule(s);
}

function attemptFailed(s: Step, vmid: number, phase: 'stopping' | 'killing', reason: string): void {
  if (s.get(vmid)?.phase !== phase) return;
  s.out.push({ do: 'disarm', vmid }, { do: 'cancel', id: `${phase === 'stopping' ? 'shutdown' : 'stop'}:${vmid}` });
  if (phase === 'stopping' && s.c.allowHardStop) {
    const g = s.setPhase(vmid, 'killing');
    s.emit('GUEST.HARD_STOP', g, { reason });
    s.out.push({ do: 'run', verb: 'stop', guest: { ...g } });
    return;
  }
  const g = s.setPhase(vmid, 'stuck');
  g.reason = phase === 'stopping' ? `${reason}; hard stop not allowed` : `hard stop failed: ${reason}`;
  s.emit('GUEST.STUCK', g, { reason: g.reason });
  // A guest still running keeps everything it (transitively) depends on.
  const seen = new Set<number>();
  const stack = [...g.dependsOn];
  while (stack.length) {
    const d = stack.pop()!;
    if (seen.has(d) || d === vmid || !s.get(d)) continue;
    seen.add(d);
    stack.push(...s.get(d)!.dependsOn);
    if (s.get(d)!.phase !== 'running') continue;
    const dep = s.setPhase(d, 'held');
    dep.reason = `${vmid} depends on it and is still running`;
    s.emit('GUEST.HELD', dep, { because: vmid, reason: dep.reason });
  }
  schedule(s);
}

/** The driver dispatched a step: arm its guest's timeout now (not while it waited in line). */
function stepStarted(s: Step, id: string): void {
  const m = /^(shutdown|stop):(\d+)$/.exec(id);
  if (!m) return;
  const vmid = Number(m[2]);
  const g = s.get(vmid);
  const phase = m[1] === 'shutdown' ? 'stopping' : 'killing';
  if (g?.phase !== phase) return;
  // Disarm first: xstate cannot cancel a timer whose id was scheduled twice.
  s.out.push({ do: 'disarm', vmid }, { do: 'arm', vmid, phase, delayMs: g.shutdownTimeoutMs });
}

function stepSettled(s: Step, id: string, error: unknown, ok: boolean): void {
  const m = /^(shutdown|stop):(\d+)$/.exec(id);
  if (!m) return;
  const vmid = Number(m[2]);
  const phase = m[1] === 'shutdown' ? 'stopping' : 'killing';
  if (s.get(vmid)?.phase !== phase) return; // a late answer from an attempt already given up on
  if (ok) stopped(s, vmid);
  else attemptFailed(s, vmid, phase, `${m[1]} failed: ${errorText(error)}`);
}

function summary(c: ShutdownContext): ShutdownSummary {
  const all = [...rows(c.guests)];
  const pick = (f: (g: Guest) => boolean) => all.filter(f).map((g) => g.vmid).sort((a, b) => a - b);
  const reasons: Record<string, string> = {};
  for (const g of all) if (g.reason) reasons[g.vmid] = g.reason;
  return {
    workflowId: c.workflowId, dryRun: c.dryRun, plan: c.plan,
    stopped: pick((g) => g.phase === 'stopped'), hardStopped: pick((g) => g.phase === 'stopped' && !!g.hard),
    stuck: pick((g) => g.phase === 'stuck'), held: pick((g) => g.phase === 'held'), skipped: pick((g) => g.phase === 'skipped'),
    reasons, order: all.filter((g) => g.seq !== undefined).sort((a, b) => a.seq! - b.seq!).map((g) => g.vmid),
    ...(c.cancelled ? { cancelled: c.cancelled } : {}),
  };
}

const shutdownSetup = setup({
  types: { input: {} as ShutdownInput, context: {} as ShutdownContext, events: {} as ShutdownEvent, output: {} as ShutdownSummary },
  actors: {
    shutdownGuest: fromPromise<StopOutput, ShutdownGuestActorInput>(notBound('shutdownGuest')),
    stopGuest: fromPromise<StopOutput, StopGuestActorInput>(notBound('stopGuest')),
    guestSteps,
  },
  actions: { emitProgress: (_args, _progress: Progress<ShutdownEventName>) => {} },
  guards: {
    dryRun: ({ context }) => context.dryRun,
    settled: ({ context }) => context.unsettled === 0,
  },
});

/** Runs `fn` as one step and turns its commands into xstate actions. */
const step = (fn: (s: Step, event: ShutdownEvent) => void) =>
  shutdownSetup.enqueueActions(({ context, event, enqueue }) => {
    const s = new Step(context, []);
    fn(s, event);
    enqueue.assign(s.c);
    const { workflowId } = context;
    for (const x of s.out) {
      if (x.do === 'emit') enqueue({ type: 'emitProgress', params: x.progress });
      else if (x.do === 'cancel') enqueue.sendTo(STEPS_ID, { type: 'STEP.CANCEL', id: x.id });
      else if (x.do === 'arm') enqueue.raise({ type: 'GUEST.TIMEOUT', vmid: x.vmid, phase: x.phase }, { id: timer(x.vmid), delay: x.delayMs });
      else if (x.do === 'disarm') enqueue.cancel(timer(x.vmid));
      else {
        const { vmid, node, shutdownTimeoutMs } = x.guest;
        const actionId = shutdownActionId(workflowId, vmid, x.verb);
        if (x.verb === 'shutdown') {
          const input: ShutdownGuestActorInput = { workflowId, vmid, node, timeoutSec: Math.max(1, Math.ceil(shutdownTimeoutMs / 1000)), actionId };
          enqueue.sendTo(STEPS_ID, { type: 'STEP.RUN', id: `shutdown:${vmid}`, src: 'shutdownGuest', input });
        } else {
          const input: StopGuestActorInput = { workflowId, vmid, node, actionId };
          enqueue.sendTo(STEPS_ID, { type: 'STEP.RUN', id: `stop:${vmid}`, src: 'stopGuest', input });
        }
      }
    }
  });

function initialContext(input: ShutdownInput): ShutdownContext {
  const down = new Set(input.alreadyStopped ?? []);
  const listed = new Set(input.guests.map((g) => g.vmid));
  const dependents = dependentsIndex(input.guests);
  const layers: Record<string, number[]> = {};
  const busy: Record<string, number> = {};
  const open: Record<string, number> = {};
  const guests: Guest[] = [];
  let running = 0;
  for (const g of input.guests) {
    const phase: Phase = down.has(g.vmid) ? 'skipped' : 'running';
    const waiting = (dependents[g.vmid] ?? []).filter((d) => listed.has(d) && !down.has(d)).length;
    guests.push({ ...g, dependsOn: [...g.dependsOn], phase, waiting });
    (layers[g.layer] ??= []).push(g.vmid);
    open[g.layer] ??= 0;
    busy[g.node] ??= 0;
    if (phase === 'running') {
      open[g.layer]++;
      running++;
    }
  }
  return {
    workflowId: input.workflowId,
    dryRun: input.dryRun ?? false,
    allowHardStop: input.allowHardStop,
    perNodeConcurrency: Math.max(1, input.perNodeConcurrency),
    plan: planShutdownWaves(input.guests, input.alreadyStopped ?? []),
    layers,
    guests: bucketsOf(guests),
    ready: readyQueues(guests.filter((g) => g.phase === 'running' && g.waiting === 0), before),
    busy,
    open,
    unsettled: running,
    inFlight: 0,
    queued: running,
    requested: 0,
    layersDone: [],
  };
}

export const GracefulShutdownMachine = shutdownSetup.createMachine({
  id: 'shutdown',
  context: ({ input }) => initialContext(input),
  initial: 'planning',
  states: {
    planning: {
      entry: { type: 'emitProgress', params: ({ context }) => ({ event: 'SHUTDOWN.PLANNED', detail: { ...context.plan, dryRun: context.dryRun } }) },
      always: [{ guard: 'dryRun', target: 'done' }, { target: 'stopping' }],
    },
    stopping: {
      // the driver never fails (a failing step comes back as STEP.FAILED), so no onError
      invoke: { id: STEPS_ID, src: 'guestSteps' },
      entry: step((s) => {
        for (const g of rows(s.c.guests)) if (g.phase === 'skipped') s.emit('GUEST.SKIPPED', g, { reason: 'already stopped' });
        for (const layer of Object.keys(s.c.open)) if (s.c.open[layer] === 0) s.t.closed.add(Number(layer));
        for (const node of Object.keys(s.c.ready)) s.t.dirty.add(node);
        schedule(s);
      }),
      always: { guard: 'settled', target: 'done' },
      on: {
        'STEP.STARTED': { actions: step((s, e) => (e.type === 'STEP.STARTED' ? stepStarted(s, e.id) : undefined)) },
        'STEP.DONE': { actions: step((s, e) => (e.type === 'STEP.DONE' ? stepSettled(s, e.id, undefined, true) : undefined)) },
        'STEP.FAILED': { actions: step((s, e) => (e.type === 'STEP.FAILED' ? stepSettled(s, e.id, e.error, false) : undefined)) },
        'GUEST.TIMEOUT': {
          actions: step((s, e) => {
            if (e.type === 'GUEST.TIMEOUT') attemptFailed(s, e.vmid, e.phase, `${e.phase === 'stopping' ? 'shutdown' : 'stop'} timed out after ${s.get(e.vmid)?.shutdownTimeoutMs} ms`);
          }),
        },
        CANCEL: { actions: step((s, e) => (e.type === 'CANCEL' ? cancel(s, e.reason) : undefined)) },
        // Neither timers nor steps in flight are in the persisted snapshot: after a restore, re-arm
        // the timers (with a full budget) and run the steps again (same action ids).
        RESUME: {
          actions: step((s) => {
            for (const g of rows(s.c.guests)) {
              if (g.phase === 'stopping' || g.phase === 'killing') {
                s.out.push({ do: 'disarm', vmid: g.vmid }); // armed again on STEP.STARTED
                s.out.push({ do: 'run', verb: g.phase === 'stopping' ? 'shutdown' : 'stop', guest: { ...g } });
              }
            }
            for (const node of Object.keys(s.c.ready)) s.t.dirty.add(node);
            schedule(s);
          }),
        },
      },
    },
    done: {
      type: 'final',
      entry: { type: 'emitProgress', params: ({ context }) => ({ event: 'SHUTDOWN.DONE', detail: { ...summary(context) } }) },
    },
  },
  output: ({ context }) => summary(context),
});
