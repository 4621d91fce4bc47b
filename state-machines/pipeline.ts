// The dependency-driven "start, then wait until healthy" engine behind LayeredBootMachine and the
// recovery phase of NodeFailoverMachine. Pure: each step returns a new pipeline (copying only what
// it changes) and appends commands; the machine turns commands into STEP.RUN / STEP.CANCEL for its
// `guestSteps` driver (children.ts), raise / cancel of timeouts, and emitProgress.
// Keeping it out of the machine config keeps the machine files readable and this logic testable.
import { dependentsIndex, downstreamRank } from './graph.ts';
import { errorText, type Progress } from './progress.ts';
import { bucketsOf, lookup, readyQueues, rows, TableDraft, type Buckets, type PhaseCounters, type PhaseRules } from './table.ts';

export type GuestPhase = 'pending' | 'starting' | 'checking' | 'healthy' | 'failed' | 'held' | 'skipped';

export interface PipeGuestInput {
  vmid: number;
  /** Where the guest will run (for failover: the chosen survivor). Concurrency is counted here. */
  node: string;
  layer: number;
  dependsOn: number[];
  /** Start plus health check must finish within this, per attempt. */
  timeoutMs: number;
  /** Expected boot time, only used to start long chains first. */
  expectedMs?: number;
}

export interface PipeGuest extends PipeGuestInput {
  rank: number;
  phase: GuestPhase;
  attempt: number;
  reason?: string;
  /** Dependencies in the run that are not up yet (counted down as they become healthy). */
  waiting: number;
  /** Position in first-start order (for the report). */
  startedSeq?: number;
}

/**
 * The run's state. Immutable between steps (the machine stays pure and its snapshots stay valid),
 * but a step costs what it changes: it copies the guests and buckets it touches, the small per-node
 * and per-layer counters, and nothing else. The indexes (`dependents`, `layers`) are built once.
 */
export interface Pipeline extends PhaseCounters {
  buckets: Buckets<PipeGuest>;
  /** For each guest in the run, the guests in the run that depend on it. */
  dependents: Record<string, number[]>;
  /** Layer → its guests. */
  layers: Record<string, number[]>;
  /** Vmids outside the run that count as healthy dependencies. */
  satisfied: number[];
  perNodeConcurrency: number;
  retries: number;
  /** Pending guests whose dependencies are all up, per node, best first (longest chain first). */
  ready: Record<string, number[]>;
  startedCount: number;
  layersDone: number[];
  lastHealthyAt?: number;
  /** `homeostat cancel`: nothing more is started (in-flight guests finish, no retries). */
  cancelled?: string;
}

export type PipeStep = 'start' | 'check';
export type PipeCommand =
  | { do: 'run'; step: PipeStep; id: string; guest: PipeGuest }
  | { do: 'cancel'; id: string }
  | { do: 'arm'; id: string; vmid: number; attempt: number; delayMs: number }
  | { do: 'disarm'; id: string }
  | { do: 'emit'; progress: Progress };

export const stepId = (step: PipeStep, vmid: number, attempt: number) => `${step}:${vmid}:${attempt}`;
export const timerId = (vmid: number) => `timeout:${vmid}`;

export function parseStepId(id: string): { step: PipeStep; vmid: number; attempt: number } | undefined {
  const m = /^(start|check):(\d+):(\d+)$/.exec(id);
  return m ? { step: m[1] as PipeStep, vmid: Number(m[2]), attempt: Number(m[3]) } : undefined;
}

const isActive = (ph: GuestPhase) => ph === 'starting' || ph === 'checking';
const isOpen = (ph: GuestPhase) => ph === 'pending' || isActive(ph);
const isUp = (ph: GuestPhase) => ph === 'healthy' || ph === 'skipped';
/** Ready order: longest remaining chain first, then lower layer, then vmid. */
const before = (a: PipeGuest, b: PipeGuest) => b.rank - a.rank || a.layer - b.layer || a.vmid - b.vmid;
/** A guest waits `pending` for its dependencies; one that comes up lets its dependents go. */
const rules = (p: Pipeline): PhaseRules<PipeGuest, GuestPhase> => ({
  queued: 'pending', inFlight: isActive, releases: isUp, unblocks: (g) => p.dependents[g.vmid] ?? [],
});

const guestOf = (p: Pipeline, vmid: number) => lookup(p.buckets, vmid);
const allGuests = (p: Pipeline) => rows(p.buckets);

export function createPipeline(
  guests: readonly PipeGuestInput[],
  opts: { satisfied: readonly number[]; skipped: readonly number[]; perNodeConcurrency: number; retries: number },
): Pipeline {
  const byVmid = new Map(guests.map((g) => [g.vmid, g]));
  const ranks = downstreamRank(guests, (v) => byVmid.get(v)?.expectedMs ?? 1);
  const skipped = new Set(opts.skipped);
  const table: PipeGuest[] = [];
  const p: Pipeline = {
    buckets: [],
    dependents: dependentsIndex(guests),
    layers: {},
    satisfied: [...new Set(opts.satisfied)],
    perNodeConcurrency: Math.max(1, opts.perNodeConcurrency),
    retries: Math.max(0, opts.retries),
    busy: {},
    ready: {},
    open: {},
    unsettled: 0,
    inFlight: 0,
    queued: 0,
    startedCount: 0,
    layersDone: [],
  };
  const satisfied = new Set(p.satisfied);
  for (const g of guests) {
    const phase: GuestPhase = skipped.has(g.vmid) ? 'skipped' : 'pending';
    // a dependency outside the run that is not healthy never comes up: `begin` holds the guest
    const waiting = g.dependsOn.filter((d) => (byVmid.has(d) ? !skipped.has(d) : !satisfied.has(d))).length;
    table.push({ ...g, dependsOn: [...g.dependsOn], rank: ranks[g.vmid] ?? 0, phase, attempt: 0, waiting });
    (p.layers[g.layer] ??= []).push(g.vmid);
    p.open[g.layer] ??= 0;
    if (phase === 'pending') {
      p.open[g.layer]++;
      p.unsettled++;
      p.queued++;
      p.busy[g.node] ??= 0;
    }
  }
  p.buckets = bucketsOf(table);
  p.ready = readyQueues(table.filter((g) => g.phase === 'pending' && g.waiting === 0), before);
  return p;
}

/** One step on a pipeline: copy-on-write of what it touches, and the commands it produces. */
class Step {
  readonly p: Pipeline;
  private readonly t: TableDraft<PipeGuest>;
  constructor(old: Pipeline, readonly out: PipeCommand[]) {
    this.t = new TableDraft(old.buckets, old.ready, before, rules(old));
    this.p = { ...old, buckets: this.t.buckets, ready: this.t.ready, busy: { ...old.busy }, open: { ...old.open }, layersDone: [...old.layersDone] };
  }

  get dirty(): Set<string> {
    return this.t.dirty;
  }

  /** Layers that settled in this step (LAYER.DONE goes out at the end of `schedule`). */
  get closed(): Set<number> {
    return this.t.closed;
  }

  get(vmid: number): PipeGuest | undefined {
    return this.t.get(vmid);
  }

  edit(vmid: number): PipeGuest {
    return this.t.edit(vmid);
  }

  picks(): PipeGuest[] {
    return this.t.picks((node) => this.p.perNodeConcurrency - (this.p.busy[node] ?? 0));
  }

  setPhase(vmid: number, phase: GuestPhase): PipeGuest {
    return this.t.setPhase(this.p, vmid, phase);
  }

  emit(event: string, g: PipeGuest, detail?: Record<string, unknown>): void {
    this.out.push({ do: 'emit', progress: { event, vmid: g.vmid, node: g.node, layer: g.layer, ...(detail ? { detail } : {}) } });
  }
}

/** Runs `fn` as one step on `p`; returns the new pipeline (`p` itself is left as it was). */
function stepOn(p: Pipeline, out: PipeCommand[], fn: (s: Step) => void): Pipeline {
  const s = new Step(p, out);
  fn(s);
  return s.p;
}

/** First step of a run: report skipped and blocked guests, then start what is ready. */
export function begin(p: Pipeline, out: PipeCommand[]): Pipeline {
  return stepOn(p, out, (s) => {
    const all = [...allGuests(p)];
    for (const g of all) if (g.phase === 'skipped') s.emit('GUEST.SKIPPED', g, { reason: 'already healthy' });
    const inRun = (v: number) => guestOf(p, v) !== undefined;
    const satisfied = new Set(p.satisfied);
    for (const g0 of all) {
      const g = s.get(g0.vmid)!;
      if (g.phase !== 'pending') continue;
      const blockers = g.dependsOn.filter((d) => !inRun(d) && !satisfied.has(d));
      if (!blockers.length) continue;
      s.setPhase(g.vmid, 'held').reason = `blocked: ${blockers.join(', ')} not healthy and not part of this run`;
      s.emit('GUEST.BLOCKED', s.get(g.vmid)!, { blockers });
      holdDependents(s, g.vmid);
    }
    for (const layer of Object.keys(p.open)) if (s.p.open[layer] === 0) s.closed.add(Number(layer));
    for (const node of Object.keys(p.ready)) s.dirty.add(node);
    schedule(s);
  });
}

/** Start the best ready guests on every node with a free slot (in global priority order). */
function schedule(s: Step): void {
  const p = s.p;
  for (const pick of s.picks()) {
    const first = pick.attempt === 0;
    const g = s.setPhase(pick.vmid, 'starting');
    if (first) g.startedSeq = p.startedCount++;
    s.emit('GUEST.STARTING', g, { attempt: g.attempt });
    // its timeout is armed on STEP.STARTED: a step may wait in the driver's line first
    s.out.push({ do: 'run', step: 'start', id: stepId('start', g.vmid, g.attempt), guest: { ...g } });
  }
  // Nothing running and nothing startable: what is left waits on a cycle. Hold it so the run ends.
  if (p.inFlight === 0 && p.queued > 0) {
    for (const g0 of allGuests(p)) {
      if (g0.phase !== 'pending') continue;
      const g = s.setPhase(g0.vmid, 'held');
      g.reason = 'dependency cycle';
      s.emit('GUEST.HELD', g, { reason: g.reason });
    }
  }
  closeLayers(s);
}

/** The driver dispatched a step: a start step arms the guest's timeout (start + health) now. */
export function stepStarted(p: Pipeline, id: string, out: PipeCommand[]): Pipeline {
  const ref = parseStepId(id);
  const g = ref && guestOf(p, ref.vmid);
  if (!ref || ref.step !== 'start' || !g || g.attempt !== ref.attempt || g.phase !== 'starting') return p;
  // Disarm first: xstate cannot cancel a timer whose id was scheduled twice.
  out.push({ do: 'disarm', id: timerId(g.vmid) }, { do: 'arm', id: timerId(g.vmid), vmid: g.vmid, attempt: g.attempt, delayMs: g.timeoutMs });
  return p;
}

/** A step finished. Stale ids (a timed-out attempt, a guest already settled) are ignored. */
export function stepDone(p: Pipeline, id: string, output: unknown, out: PipeCommand[]): Pipeline {
  return stepOn(p, out, (s) => {
    const ref = parseStepId(id);
    const g = ref && s.get(ref.vmid);
    if (!ref || !g || g.attempt !== ref.attempt) return;
    if (ref.step === 'start' && g.phase === 'starting') {
      const c = s.setPhase(g.vmid, 'checking');
      s.emit('GUEST.STARTED', c, { attempt: c.attempt });
      out.push({ do: 'run', step: 'check', id: stepId('check', c.vmid, c.attempt), guest: { ...c } });
      return;
    }
    if (ref.step === 'check' && g.phase === 'checking') {
      const h = s.setPhase(g.vmid, 'healthy');
      const at = (output as { at?: unknown } | undefined)?.at;
      if (typeof at === 'number') s.p.lastHealthyAt = Math.max(s.p.lastHealthyAt ?? at, at);
      out.push({ do: 'disarm', id: timerId(h.vmid) });
      s.emit('GUEST.HEALTHY', h, { attempt: h.attempt });
      schedule(s);
    }
  });
}

export function stepFailed(p: Pipeline, id: string, error: unknown, out: PipeCommand[]): Pipeline {
  return stepOn(p, out, (s) => {
    const ref = parseStepId(id);
    if (ref) attemptFailed(s, ref.vmid, ref.attempt, `${ref.step === 'start' ? 'start' : 'health check'} failed: ${errorText(error)}`);
  });
}

export function timedOut(p: Pipeline, vmid: number, attempt: number, out: PipeCommand[]): Pipeline {
  return stepOn(p, out, (s) => {
    const g = s.get(vmid);
    if (g) attemptFailed(s, vmid, attempt, `not healthy within ${g.timeoutMs} ms`);
  });
}

function attemptFailed(s: Step, vmid: number, attempt: number, reason: string): void {
  const g = s.get(vmid);
  if (!g || g.attempt !== attempt || !isActive(g.phase)) return;
  // Cancel both steps of this attempt: whichever is running must not report late.
  s.out.push({ do: 'cancel', id: stepId('start', vmid, attempt) }, { do: 'cancel', id: stepId('check', vmid, attempt) });
  s.out.push({ do: 'disarm', id: timerId(vmid) });
  if (g.attempt < s.p.retries && !s.p.cancelled) {
    s.edit(vmid).attempt += 1;
    const r = s.setPhase(vmid, 'pending');
    s.emit('GUEST.RETRY', r, { attempt: r.attempt, reason });
  } else {
    const f = s.setPhase(vmid, 'failed');
    f.reason = reason;
    s.emit('GUEST.FAILED', f, { attempts: f.attempt + 1, reason });
    holdDependents(s, vmid);
  }
  schedule(s);
}

/** Cancelled: every guest not started yet is held (GUEST.HELD with the reason); the ones in flight
 *  finish, without retries, and the run ends when they have. */
export function cancelRun(p: Pipeline, reason: string, out: PipeCommand[]): Pipeline {
  if (p.cancelled) return p;
  return stepOn(p, out, (s) => {
    s.p.cancelled = reason;
    for (const g0 of allGuests(p)) {
      if (g0.phase !== 'pending') continue;
      const g = s.setPhase(g0.vmid, 'held');
      g.reason = reason;
      s.emit('GUEST.HELD', g, { reason });
    }
    closeLayers(s);
  });
}

/** Never start a guest over a broken dependency: hold everything downstream of `root`. */
function holdDependents(s: Step, root: number): void {
  const stack = [...(s.p.dependents[root] ?? [])];
  while (stack.length) {
    const v = stack.pop()!;
    if (s.get(v)?.phase !== 'pending') continue;
    const g = s.setPhase(v, 'held');
    g.reason = `depends on ${root}, which is not up`;
    s.emit('GUEST.HELD', g, { because: root, reason: g.reason });
    stack.push(...(s.p.dependents[v] ?? []));
  }
}

/** After a restore: neither timers nor the steps in flight are part of xstate's persisted
 *  snapshot, so arm the timers again and run each in-flight step again (same id, same input). */
export function rearm(p: Pipeline, out: PipeCommand[]): Pipeline {
  return stepOn(p, out, (s) => {
    for (const g of allGuests(p)) {
      if (isActive(g.phase)) {
        // Disarm first: xstate cannot cancel a timer whose id was scheduled twice.
        out.push({ do: 'disarm', id: timerId(g.vmid) });
        // a start step arms it again on STEP.STARTED
        if (g.phase === 'checking') out.push({ do: 'arm', id: timerId(g.vmid), vmid: g.vmid, attempt: g.attempt, delayMs: g.timeoutMs });
        const step: PipeStep = g.phase === 'starting' ? 'start' : 'check';
        out.push({ do: 'run', step, id: stepId(step, g.vmid, g.attempt), guest: { ...g } });
      }
    }
    for (const node of Object.keys(p.ready)) s.dirty.add(node);
    schedule(s);
  });
}

function closeLayers(s: Step): void {
  const p = s.p;
  for (const layer of [...s.closed].sort((a, b) => a - b)) {
    if (p.layersDone.includes(layer)) continue;
    p.layersDone.push(layer);
    const gs = (p.layers[layer] ?? []).map((v) => s.get(v)!);
    const count = (ph: GuestPhase) => gs.filter((g) => g.phase === ph).map((g) => g.vmid);
    s.out.push({ do: 'emit', progress: { event: 'LAYER.DONE', layer, detail: { healthy: count('healthy'), failed: count('failed'), held: count('held'), skipped: count('skipped') } } });
  }
  s.closed.clear();
}

export function isSettled(p: Pipeline): boolean {
  return p.unsettled === 0;
}

export interface PipelineSummary {
  healthy: number[];
  failed: number[];
  held: number[];
  skipped: number[];
  /** Why each failed or held guest is where it is. */
  reasons: Record<string, string>;
  /** First-start order. */
  started: number[];
  /** Set when the run was cancelled (the reason). */
  cancelled?: string;
}

export function summarize(p: Pipeline): PipelineSummary {
  const all = [...allGuests(p)];
  const sorted = (ph: GuestPhase) => all.filter((g) => g.phase === ph).map((g) => g.vmid).sort((a, b) => a - b);
  const reasons: Record<string, string> = {};
  for (const g of all) if (g.reason && (g.phase === 'failed' || g.phase === 'held')) reasons[g.vmid] = g.reason;
  const started = all.filter((g) => g.startedSeq !== undefined).sort((a, b) => a.startedSeq! - b.startedSeq!).map((g) => g.vmid);
  return { healthy: sorted('healthy'), failed: sorted('failed'), held: sorted('held'), skipped: sorted('skipped'), reasons, started, ...(p.cancelled ? { cancelled: p.cancelled } : {}) };
}
