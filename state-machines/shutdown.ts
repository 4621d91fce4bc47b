// GracefulShutdownMachine: the boot graph in reverse. A guest is shut down only once every guest
// that depends on it is down, within `perNodeConcurrency` per node. A graceful `shutdownGuest`
// that fails or outlives its timeout falls back to `stopGuest` only when `allowHardStop`; otherwise
// (or when the hard stop fails too) the guest is STUCK and everything it depends on is held up,
// because a still-running guest must keep its dependencies.
//
// Steps run through the one `guestSteps` driver (children.ts), as `shutdown:<vmid>` and
// `stop:<vmid>`. A step copies the guest table shallowly and only the guests it changes (it used
// to structuredClone the whole context and rebuild the dependents index on every event).
import { setup, fromPromise } from 'xstate';
import { dependentsIndex, planShutdownWaves, transitiveDependencies, type BootPlan } from './graph.ts';
import { errorText, type Progress } from './progress.ts';
import { guestSteps, notBound, STEPS_ID, type StepDoneEvent, type StepFailedEvent } from './children.ts';

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
interface Guest extends ShutdownGuestInput { phase: Phase; hard?: boolean; reason?: string }

interface ShutdownContext {
  workflowId: string;
  dryRun: boolean;
  allowHardStop: boolean;
  perNodeConcurrency: number;
  plan: BootPlan;
  /** For each guest, the guests that depend on it (built once). */
  dependents: Record<string, number[]>;
  guests: Record<string, Guest>;
  order: number[];
  layersDone: number[];
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
}

export type ShutdownEvent =
  | { type: 'RESUME' }
  | { type: 'GUEST.TIMEOUT'; vmid: number; phase: 'stopping' | 'killing' }
  | StepDoneEvent
  | StepFailedEvent;

export const shutdownActionId = (workflowId: string, vmid: number, verb: 'shutdown' | 'stop') => `${workflowId}:${vmid}:${verb}`;
const timer = (vmid: number) => `timeout:${vmid}`;

type Cmd =
  | { do: 'emit'; progress: Progress<ShutdownEventName> }
  | { do: 'run'; verb: 'shutdown' | 'stop'; guest: Guest }
  | { do: 'cancel'; id: string }
  | { do: 'arm'; vmid: number; phase: 'stopping' | 'killing'; delayMs: number }
  | { do: 'disarm'; vmid: number };

const all = (c: { guests: Record<string, Guest> }) => Object.values(c.guests);

/** The context being changed by one step: guests are copied on first write, the rest is shared. */
interface Draft extends ShutdownContext { copied: Set<number> }

function draft(c: ShutdownContext): Draft {
  return { ...c, guests: { ...c.guests }, order: [...c.order], layersDone: [...c.layersDone], copied: new Set() };
}

/** A writable copy of the guest, made once per step. */
function edit(c: Draft, vmid: number): Guest {
  if (!c.copied.has(vmid)) {
    c.guests[vmid] = { ...c.guests[vmid] };
    c.copied.add(vmid);
  }
  return c.guests[vmid];
}
const emit = (out: Cmd[], event: ShutdownEventName, g: Guest, detail?: Record<string, unknown>) =>
  out.push({ do: 'emit', progress: { event, vmid: g.vmid, node: g.node, layer: g.layer, ...(detail ? { detail } : {}) } });
const active = (g: Guest) => g.phase === 'stopping' || g.phase === 'killing';

const down = (g: Guest | undefined) => g?.phase === 'stopped' || g?.phase === 'skipped';

function schedule(c: Draft, out: Cmd[]): void {
  const busy: Record<string, number> = {};
  for (const g of all(c)) if (active(g)) busy[g.node] = (busy[g.node] ?? 0) + 1;
  const ready = all(c)
    .filter((g) => g.phase === 'running' && (c.dependents[g.vmid] ?? []).every((d) => down(c.guests[d])))
    .sort((a, b) => b.layer - a.layer || a.vmid - b.vmid);
  for (const r of ready) {
    if ((busy[r.node] ?? 0) >= c.perNodeConcurrency) continue;
    busy[r.node] = (busy[r.node] ?? 0) + 1;
    const g = edit(c, r.vmid);
    g.phase = 'stopping';
    c.order.push(g.vmid);
    emit(out, 'GUEST.STOPPING', g);
    out.push({ do: 'run', verb: 'shutdown', guest: { ...g } }, { do: 'arm', vmid: g.vmid, phase: 'stopping', delayMs: g.shutdownTimeoutMs });
  }
  // Nothing in flight and nothing ready: only a dependency cycle can leave guests running here.
  if (!all(c).some(active)) {
    for (const r of all(c)) {
      if (r.phase !== 'running') continue;
      const g = edit(c, r.vmid);
      g.phase = 'held';
      g.reason = 'dependency cycle';
      emit(out, 'GUEST.HELD', g, { reason: g.reason });
    }
  }
  const byLayer = new Map<number, Guest[]>();
  for (const g of all(c)) if (!c.layersDone.includes(g.layer)) byLayer.set(g.layer, [...(byLayer.get(g.layer) ?? []), g]);
  for (const layer of [...byLayer.keys()].sort((a, b) => b - a)) {
    const gs = byLayer.get(layer)!;
    if (gs.some((g) => g.phase === 'running' || active(g))) continue;
    c.layersDone.push(layer);
    const pick = (ph: Phase) => gs.filter((g) => g.phase === ph).map((g) => g.vmid);
    out.push({ do: 'emit', progress: { event: 'LAYER.DONE', layer, detail: { stopped: pick('stopped'), stuck: pick('stuck'), held: pick('held'), skipped: pick('skipped') } } });
  }
}

function stopped(c: Draft, vmid: number, out: Cmd[]): void {
  if (!c.guests[vmid] || !active(c.guests[vmid])) return;
  const g = edit(c, vmid);
  g.hard = g.phase === 'killing';
  g.phase = 'stopped';
  out.push({ do: 'disarm', vmid });
  emit(out, 'GUEST.STOPPED', g, { hard: g.hard });
  schedule(c, out);
}

function attemptFailed(c: Draft, vmid: number, phase: 'stopping' | 'killing', reason: string, out: Cmd[]): void {
  if (c.guests[vmid]?.phase !== phase) return;
  const g = edit(c, vmid);
  out.push({ do: 'disarm', vmid }, { do: 'cancel', id: `${phase === 'stopping' ? 'shutdown' : 'stop'}:${vmid}` });
  if (phase === 'stopping' && c.allowHardStop) {
    g.phase = 'killing';
    emit(out, 'GUEST.HARD_STOP', g, { reason });
    out.push({ do: 'run', verb: 'stop', guest: { ...g } }, { do: 'arm', vmid, phase: 'killing', delayMs: g.shutdownTimeoutMs });
    return;
  }
  g.phase = 'stuck';
  g.reason = phase === 'stopping' ? `${reason}; hard stop not allowed` : `hard stop failed: ${reason}`;
  emit(out, 'GUEST.STUCK', g, { reason: g.reason });
  for (const d of transitiveDependencies(all(c), vmid)) {
    if (c.guests[d].phase !== 'running') continue;
    const dep = edit(c, d);
    dep.phase = 'held';
    dep.reason = `${vmid} depends on it and is still running`;
    emit(out, 'GUEST.HELD', dep, { because: vmid, reason: dep.reason });
  }
  schedule(c, out);
}

function stepSettled(c: Draft, id: string, error: unknown, ok: boolean, out: Cmd[]): void {
  const m = /^(shutdown|stop):(\d+)$/.exec(id);
  if (!m) return;
  const vmid = Number(m[2]);
  const phase = m[1] === 'shutdown' ? 'stopping' : 'killing';
  if (c.guests[vmid]?.phase !== phase) return; // a late answer from an attempt already given up on
  if (ok) stopped(c, vmid, out);
  else attemptFailed(c, vmid, phase, `${m[1]} failed: ${errorText(error)}`, out);
}

function summary(c: ShutdownContext): ShutdownSummary {
  const pick = (f: (g: Guest) => boolean) => all(c).filter(f).map((g) => g.vmid).sort((a, b) => a - b);
  const reasons: Record<string, string> = {};
  for (const g of all(c)) if (g.reason) reasons[g.vmid] = g.reason;
  return {
    workflowId: c.workflowId, dryRun: c.dryRun, plan: c.plan,
    stopped: pick((g) => g.phase === 'stopped'), hardStopped: pick((g) => g.phase === 'stopped' && !!g.hard),
    stuck: pick((g) => g.phase === 'stuck'), held: pick((g) => g.phase === 'held'), skipped: pick((g) => g.phase === 'skipped'),
    reasons, order: [...c.order],
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
    settled: ({ context }) => !all(context).some((g) => g.phase === 'running' || active(g)),
  },
});

const step = (fn: (c: Draft, event: ShutdownEvent, out: Cmd[]) => void) =>
  shutdownSetup.enqueueActions(({ context, event, enqueue }) => {
    const c = draft(context);
    const out: Cmd[] = [];
    fn(c, event, out);
    enqueue.assign({ guests: c.guests, order: c.order, layersDone: c.layersDone });
    for (const x of out) {
      if (x.do === 'emit') enqueue({ type: 'emitProgress', params: x.progress });
      else if (x.do === 'cancel') enqueue.sendTo(STEPS_ID, { type: 'STEP.CANCEL', id: x.id });
      else if (x.do === 'arm') enqueue.raise({ type: 'GUEST.TIMEOUT', vmid: x.vmid, phase: x.phase }, { id: timer(x.vmid), delay: x.delayMs });
      else if (x.do === 'disarm') enqueue.cancel(timer(x.vmid));
      else {
        const { vmid, node, shutdownTimeoutMs } = x.guest;
        const actionId = shutdownActionId(c.workflowId, vmid, x.verb);
        if (x.verb === 'shutdown') {
          const input: ShutdownGuestActorInput = { workflowId: c.workflowId, vmid, node, timeoutSec: Math.max(1, Math.ceil(shutdownTimeoutMs / 1000)), actionId };
          enqueue.sendTo(STEPS_ID, { type: 'STEP.RUN', id: `shutdown:${vmid}`, src: 'shutdownGuest', input });
        } else {
          const input: StopGuestActorInput = { workflowId: c.workflowId, vmid, node, actionId };
          enqueue.sendTo(STEPS_ID, { type: 'STEP.RUN', id: `stop:${vmid}`, src: 'stopGuest', input });
        }
      }
    }
  });

export const GracefulShutdownMachine = shutdownSetup.createMachine({
  id: 'shutdown',
  context: ({ input }) => {
    const down = new Set(input.alreadyStopped ?? []);
    const guests: Record<string, Guest> = {};
    for (const g of input.guests) guests[g.vmid] = { ...g, dependsOn: [...g.dependsOn], phase: down.has(g.vmid) ? 'skipped' : 'running' };
    return {
      workflowId: input.workflowId,
      dryRun: input.dryRun ?? false,
      allowHardStop: input.allowHardStop,
      perNodeConcurrency: Math.max(1, input.perNodeConcurrency),
      plan: planShutdownWaves(input.guests, input.alreadyStopped ?? []),
      dependents: dependentsIndex(input.guests),
      guests,
      order: [],
      layersDone: [],
    };
  },
  initial: 'planning',
  states: {
    planning: {
      entry: { type: 'emitProgress', params: ({ context }) => ({ event: 'SHUTDOWN.PLANNED', detail: { ...context.plan, dryRun: context.dryRun } }) },
      always: [{ guard: 'dryRun', target: 'done' }, { target: 'stopping' }],
    },
    stopping: {
      // the driver never fails (a failing step comes back as STEP.FAILED), so no onError
      invoke: { id: STEPS_ID, src: 'guestSteps' },
      entry: step((c, _e, out) => {
        for (const g of all(c)) if (g.phase === 'skipped') emit(out, 'GUEST.SKIPPED', g, { reason: 'already stopped' });
        schedule(c, out);
      }),
      always: { guard: 'settled', target: 'done' },
      on: {
        'STEP.DONE': { actions: step((c, e, out) => (e.type === 'STEP.DONE' ? stepSettled(c, e.id, undefined, true, out) : undefined)) },
        'STEP.FAILED': { actions: step((c, e, out) => (e.type === 'STEP.FAILED' ? stepSettled(c, e.id, e.error, false, out) : undefined)) },
        'GUEST.TIMEOUT': {
          actions: step((c, e, out) => {
            if (e.type === 'GUEST.TIMEOUT') attemptFailed(c, e.vmid, e.phase, `${e.phase === 'stopping' ? 'shutdown' : 'stop'} timed out after ${c.guests[e.vmid]?.shutdownTimeoutMs} ms`, out);
          }),
        },
        // Neither timers nor steps in flight are in the persisted snapshot: after a restore, re-arm
        // the timers (with a full budget) and run the steps again (same action ids).
        RESUME: {
          actions: step((c, _e, out) => {
            for (const g of all(c)) {
              if (g.phase === 'stopping' || g.phase === 'killing') {
                out.push({ do: 'disarm', vmid: g.vmid }, { do: 'arm', vmid: g.vmid, phase: g.phase, delayMs: g.shutdownTimeoutMs });
                out.push({ do: 'run', verb: g.phase === 'stopping' ? 'shutdown' : 'stop', guest: { ...g } });
              }
            }
            schedule(c, out);
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
