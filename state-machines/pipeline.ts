// The dependency-driven "start, then wait until healthy" engine behind LayeredBootMachine and the
// recovery phase of NodeFailoverMachine. Pure: each function mutates a draft copy of the context
// and appends commands; the machine turns commands into spawnChild / raise / cancel / emitProgress.
// Keeping it out of the machine config keeps the machine files readable and this logic testable.
import { dependentsIndex, downstreamRank } from './graph.ts';
import { errorText, type Progress } from './progress.ts';

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
}

export interface Pipeline {
  guests: Record<string, PipeGuest>;
  /** Vmids outside `guests` that count as healthy dependencies. */
  satisfied: number[];
  perNodeConcurrency: number;
  retries: number;
  /** First-start order and became-healthy order, for the report and for tests. */
  started: number[];
  healthy: number[];
  layersDone: number[];
  lastHealthyAt?: number;
}

export type PipeStep = 'start' | 'check';
export type PipeCommand =
  | { do: 'spawn'; step: PipeStep; id: string; guest: PipeGuest }
  | { do: 'stop'; id: string }
  | { do: 'arm'; id: string; vmid: number; attempt: number; delayMs: number }
  | { do: 'disarm'; id: string }
  | { do: 'emit'; progress: Progress };

export const actorId = (step: PipeStep, vmid: number, attempt: number) => `${step}:${vmid}:${attempt}`;
export const timerId = (vmid: number) => `timeout:${vmid}`;

export function parseActorId(id: string): { step: PipeStep; vmid: number; attempt: number } | undefined {
  const m = /^(start|check):(\d+):(\d+)$/.exec(id);
  return m ? { step: m[1] as PipeStep, vmid: Number(m[2]), attempt: Number(m[3]) } : undefined;
}

export function createPipeline(
  guests: readonly PipeGuestInput[],
  opts: { satisfied: readonly number[]; skipped: readonly number[]; perNodeConcurrency: number; retries: number },
): Pipeline {
  const ranks = downstreamRank(guests, (v) => guests.find((g) => g.vmid === v)?.expectedMs ?? 1);
  const skipped = new Set(opts.skipped);
  const out: Pipeline = {
    guests: {},
    satisfied: [...new Set(opts.satisfied)],
    perNodeConcurrency: Math.max(1, opts.perNodeConcurrency),
    retries: Math.max(0, opts.retries),
    started: [],
    healthy: [],
    layersDone: [],
  };
  for (const g of guests) {
    out.guests[g.vmid] = { ...g, dependsOn: [...g.dependsOn], rank: ranks[g.vmid] ?? 0, phase: skipped.has(g.vmid) ? 'skipped' : 'pending', attempt: 0 };
  }
  return out;
}

const list = (p: Pipeline) => Object.values(p.guests);
const emit = (out: PipeCommand[], event: string, g: PipeGuest, detail?: Record<string, unknown>) =>
  out.push({ do: 'emit', progress: { event, vmid: g.vmid, node: g.node, layer: g.layer, ...(detail ? { detail } : {}) } });

function isUp(p: Pipeline, vmid: number): boolean {
  const g = p.guests[vmid];
  return g ? g.phase === 'healthy' || g.phase === 'skipped' : p.satisfied.includes(vmid);
}

/** First step of a run: report skipped and blocked guests, then start what is ready. */
export function begin(p: Pipeline, out: PipeCommand[]): void {
  for (const g of list(p)) if (g.phase === 'skipped') emit(out, 'GUEST.SKIPPED', g, { reason: 'already healthy' });
  for (const g of list(p)) {
    if (g.phase !== 'pending') continue;
    const blockers = g.dependsOn.filter((d) => !p.guests[d] && !p.satisfied.includes(d));
    if (!blockers.length) continue;
    g.phase = 'held';
    g.reason = `blocked: ${blockers.join(', ')} not healthy and not part of this run`;
    emit(out, 'GUEST.BLOCKED', g, { blockers });
    holdDependents(p, g.vmid, out);
  }
  schedule(p, out);
}

/** Start every pending guest whose dependencies are up, longest chain first, within node slots. */
export function schedule(p: Pipeline, out: PipeCommand[]): void {
  const busy: Record<string, number> = {};
  for (const g of list(p)) if (g.phase === 'starting' || g.phase === 'checking') busy[g.node] = (busy[g.node] ?? 0) + 1;
  const ready = list(p)
    .filter((g) => g.phase === 'pending' && g.dependsOn.every((d) => isUp(p, d)))
    .sort((a, b) => b.rank - a.rank || a.layer - b.layer || a.vmid - b.vmid);
  for (const g of ready) {
    if ((busy[g.node] ?? 0) >= p.perNodeConcurrency) continue;
    busy[g.node] = (busy[g.node] ?? 0) + 1;
    g.phase = 'starting';
    if (g.attempt === 0) p.started.push(g.vmid);
    emit(out, 'GUEST.STARTING', g, { attempt: g.attempt });
    out.push({ do: 'spawn', step: 'start', id: actorId('start', g.vmid, g.attempt), guest: { ...g } });
    out.push({ do: 'arm', id: timerId(g.vmid), vmid: g.vmid, attempt: g.attempt, delayMs: g.timeoutMs });
  }
  // Nothing running and nothing startable: what is left waits on a cycle. Hold it so the run ends.
  if (!list(p).some((g) => g.phase === 'starting' || g.phase === 'checking')) {
    for (const g of list(p)) {
      if (g.phase !== 'pending') continue;
      g.phase = 'held';
      g.reason = 'dependency cycle';
      emit(out, 'GUEST.HELD', g, { reason: g.reason });
    }
  }
  checkLayers(p, out);
}

/** A child finished. Stale ids (a timed-out attempt, a guest already settled) are ignored. */
export function stepDone(p: Pipeline, id: string, output: unknown, out: PipeCommand[]): void {
  const ref = parseActorId(id);
  out.push({ do: 'stop', id });
  const g = ref && p.guests[ref.vmid];
  if (!ref || !g || g.attempt !== ref.attempt) return;
  if (ref.step === 'start' && g.phase === 'starting') {
    g.phase = 'checking';
    emit(out, 'GUEST.STARTED', g, { attempt: g.attempt });
    out.push({ do: 'spawn', step: 'check', id: actorId('check', g.vmid, g.attempt), guest: { ...g } });
    return;
  }
  if (ref.step === 'check' && g.phase === 'checking') {
    g.phase = 'healthy';
    p.healthy.push(g.vmid);
    const at = (output as { at?: unknown } | undefined)?.at;
    if (typeof at === 'number') p.lastHealthyAt = Math.max(p.lastHealthyAt ?? at, at);
    out.push({ do: 'disarm', id: timerId(g.vmid) });
    emit(out, 'GUEST.HEALTHY', g, { attempt: g.attempt });
    schedule(p, out);
  }
}

export function stepFailed(p: Pipeline, id: string, error: unknown, out: PipeCommand[]): void {
  const ref = parseActorId(id);
  out.push({ do: 'stop', id });
  if (ref) attemptFailed(p, ref.vmid, ref.attempt, `${ref.step === 'start' ? 'start' : 'health check'} failed: ${errorText(error)}`, out);
}

export function timedOut(p: Pipeline, vmid: number, attempt: number, out: PipeCommand[]): void {
  const g = p.guests[vmid];
  if (g) attemptFailed(p, vmid, attempt, `not healthy within ${g.timeoutMs} ms`, out);
}

function attemptFailed(p: Pipeline, vmid: number, attempt: number, reason: string, out: PipeCommand[]): void {
  const g = p.guests[vmid];
  if (!g || g.attempt !== attempt || (g.phase !== 'starting' && g.phase !== 'checking')) return;
  // Cancel both steps of this attempt: whichever is running must not report late.
  out.push({ do: 'stop', id: actorId('start', vmid, attempt) }, { do: 'stop', id: actorId('check', vmid, attempt) });
  out.push({ do: 'disarm', id: timerId(vmid) });
  if (g.attempt < p.retries) {
    g.attempt += 1;
    g.phase = 'pending';
    emit(out, 'GUEST.RETRY', g, { attempt: g.attempt, reason });
  } else {
    g.phase = 'failed';
    g.reason = reason;
    emit(out, 'GUEST.FAILED', g, { attempts: g.attempt + 1, reason });
    holdDependents(p, vmid, out);
  }
  schedule(p, out);
}

/** Never start a guest over a broken dependency: hold everything downstream of `root`. */
export function holdDependents(p: Pipeline, root: number, out: PipeCommand[]): void {
  const idx = dependentsIndex(list(p));
  const stack = [...(idx[root] ?? [])];
  while (stack.length) {
    const g = p.guests[stack.pop()!];
    if (!g || g.phase !== 'pending') continue;
    g.phase = 'held';
    g.reason = `depends on ${root}, which is not up`;
    emit(out, 'GUEST.HELD', g, { because: root, reason: g.reason });
    stack.push(...(idx[g.vmid] ?? []));
  }
}

/** After a restore: timers are not part of xstate's persisted snapshot, so arm them again. */
export function rearm(p: Pipeline, out: PipeCommand[]): void {
  for (const g of list(p)) {
    if (g.phase === 'starting' || g.phase === 'checking') {
      // Disarm first: xstate cannot cancel a timer whose id was scheduled twice.
      out.push({ do: 'disarm', id: timerId(g.vmid) });
      out.push({ do: 'arm', id: timerId(g.vmid), vmid: g.vmid, attempt: g.attempt, delayMs: g.timeoutMs });
    }
  }
  schedule(p, out);
}

function checkLayers(p: Pipeline, out: PipeCommand[]): void {
  const layers = [...new Set(list(p).map((g) => g.layer))].sort((a, b) => a - b);
  for (const layer of layers) {
    if (p.layersDone.includes(layer)) continue;
    const gs = list(p).filter((g) => g.layer === layer);
    if (gs.some((g) => g.phase === 'pending' || g.phase === 'starting' || g.phase === 'checking')) continue;
    p.layersDone.push(layer);
    const count = (ph: GuestPhase) => gs.filter((g) => g.phase === ph).map((g) => g.vmid);
    out.push({ do: 'emit', progress: { event: 'LAYER.DONE', layer, detail: { healthy: count('healthy'), failed: count('failed'), held: count('held'), skipped: count('skipped') } } });
  }
}

export function isSettled(p: Pipeline): boolean {
  return !list(p).some((g) => g.phase === 'pending' || g.phase === 'starting' || g.phase === 'checking');
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
}

export function summarize(p: Pipeline): PipelineSummary {
  const sorted = (ph: GuestPhase) => list(p).filter((g) => g.phase === ph).map((g) => g.vmid).sort((a, b) => a - b);
  const reasons: Record<string, string> = {};
  for (const g of list(p)) if (g.reason && (g.phase === 'failed' || g.phase === 'held')) reasons[g.vmid] = g.reason;
  return { healthy: sorted('healthy'), failed: sorted('failed'), held: sorted('held'), skipped: sorted('skipped'), reasons, started: [...p.started] };
}
