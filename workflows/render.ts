// Text for people: one line per workflow event (logs, pipes), a live board for a TTY (which layer,
// which guests wait on what), the dry-run plan, and the end summary. Colour is the caller's choice.
import { localTime } from '../core/mod.ts';
import type { WorkflowEvent } from '../bus/mod.ts';
import type { BootSummary, FailoverReport, ShutdownSummary } from '../state-machines/mod.ts';
import type { StartReply, WorkflowResult } from './follow.ts';
import type { GuestLine } from './plans.ts';

export type Paint = (text: string, color: 'red' | 'green' | 'yellow' | 'blue' | 'cyan' | 'gray' | 'bold') => string;
const plain: Paint = (t) => t;

type Phase = 'waiting' | 'starting' | 'checking' | 'healthy' | 'retry' | 'failed' | 'held' | 'skipped' | 'running' | 'stopping' | 'stopped' | 'stuck';
const PHASE_OF: Record<string, Phase> = {
  'GUEST.STARTING': 'starting', 'GUEST.STARTED': 'checking', 'GUEST.HEALTHY': 'healthy', 'GUEST.RETRY': 'retry', 'GUEST.FAILED': 'failed',
  'GUEST.HELD': 'held', 'GUEST.BLOCKED': 'held', 'GUEST.UNPLACED': 'held', 'GUEST.SKIPPED': 'skipped', 'GUEST.STOPPING': 'stopping',
  'GUEST.HARD_STOP': 'stopping', 'GUEST.STOPPED': 'stopped', 'GUEST.STUCK': 'stuck',
};
const GLYPH: Record<Phase, [string, Parameters<Paint>[1]]> = {
  waiting: ['·', 'gray'], starting: ['▶', 'yellow'], checking: ['♥', 'yellow'], healthy: ['✓', 'green'], retry: ['↻', 'yellow'], failed: ['✗', 'red'],
  held: ['⏸', 'red'], skipped: ['=', 'gray'], running: ['●', 'gray'], stopping: ['▼', 'yellow'], stopped: ['■', 'green'], stuck: ['✗', 'red'],
};

const DETAIL_KEYS = ['attempt', 'attempts', 'reason', 'because', 'blockers', 'hard', 'from', 'to', 'phase', 'status', 'error', 'fenceDelayMs', 'offline', 'detail', 'experiment'];

function briefDetail(ev: WorkflowEvent): string {
  const d = ev.detail ?? {};
  if (ev.event.endsWith('.PLANNED')) {
    const waves = (d as { waves?: number[][] }).waves;
    const faults = (d as { faults?: unknown[] }).faults;
    return waves ? `${waves.length} wave(s): ${waves.map((w) => w.join(' ')).join(' | ')}` : faults ? `${faults.length} fault(s)${d.dryRun ? ' (dry run)' : ''}` : '';
  }
  if (ev.event === 'LAYER.DONE') return Object.entries(d).filter(([, v]) => Array.isArray(v) && v.length).map(([k, v]) => `${k} ${(v as number[]).join(',')}`).join('  ');
  if (ev.event.startsWith('FAULT.')) {
    const f = d as { kind?: string; target?: unknown; mttrMs?: number; sloMs?: number; error?: string };
    return `${f.kind} ${String(f.target)}${f.mttrMs !== undefined ? `  MTTR ${secs(f.mttrMs)} (SLO ${secs(f.sloMs ?? 0)})` : ''}${f.error ? `  ${f.error}` : ''}`;
  }
  if (ev.event.endsWith('.DONE') || ev.event === 'CHAOS.REPORT' || ev.event === 'WORKFLOW.ENDED') return ev.event === 'WORKFLOW.ENDED' ? String(d.status) : '';
  return DETAIL_KEYS.filter((k) => d[k] !== undefined && d[k] !== '' && d[k] !== false).map((k) => `${k} ${typeof d[k] === 'object' ? JSON.stringify(d[k]) : String(d[k])}`).join('  ').slice(0, 200);
}

const LEGEND: Record<'boot' | 'shutdown', Phase[]> = {
  boot: ['waiting', 'starting', 'checking', 'healthy', 'retry', 'failed', 'held', 'skipped'],
  shutdown: ['running', 'stopping', 'stopped', 'stuck', 'held'],
};
const LABEL: Partial<Record<Phase, string>> = { checking: 'health check', skipped: 'already as wanted' };

/** What a workflow waits for after `ev`, for people watching a quiet stretch. */
export function waitingAfter(ev: WorkflowEvent, name: (vmid: number) => string = String): string {
  const d = ev.detail as { kind?: string; target?: unknown; sloMs?: number };
  switch (ev.event) {
    case 'FAULT.INJECTED': return `waiting for homeostat to heal ${d.kind ?? 'the fault'} on ${String(d.target)}${d.sloMs ? ` (SLO ${secs(d.sloMs)})` : ''}`;
    case 'GUEST.STARTING':
    case 'GUEST.STARTED': return ev.vmid !== undefined ? `waiting for ${name(ev.vmid)} to be healthy` : '';
    case 'GUEST.STOPPING': return ev.vmid !== undefined ? `waiting for ${name(ev.vmid)} to stop` : '';
    case 'STEADY_STATE.OK': return (ev.detail as { phase?: string }).phase === 'after' ? 'rolling back' : 'injecting the faults';
    case 'ROLLBACK.STARTED': return 'waiting for the rollbacks';
    default: return waitText(ev).replace(/^waiting: /, 'waiting for ');
  }
}

/** "waiting: fence delay 10 s", "waiting: cooldown 15 s", from the durations an event carries. */
function waitText(ev: WorkflowEvent): string {
  const d = ev.detail ?? {};
  const ms = (k: string) => (typeof d[k] === 'number' ? secs(d[k] as number) : undefined);
  const parts = [
    ms('fenceDelayMs') && `fence delay ${ms('fenceDelayMs')}`,
    ms('cooldownMs') && `cooldown ${ms('cooldownMs')}`,
    ms('waitMs') && `${String(d.waitingFor ?? 'wait')} ${ms('waitMs')}`,
    ms('timeoutMs') && `up to ${ms('timeoutMs')}`,
    typeof d.waitingFor === 'string' && !('waitMs' in d) ? d.waitingFor : undefined,
  ].filter(Boolean);
  return parts.length ? `waiting: ${parts.join(', ')} (since ${ev.event})` : '';
}

export const secs = (ms: number) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;

export class WorkflowBoard {
  private readonly phase = new Map<number, Phase>();
  private readonly why = new Map<number, string>();
  private readonly guests: GuestLine[];
  private readonly names = new Map<number, string>();
  private headline = '';
  /** What a long step waits for (fence delay, cooldown, a guest's health), from its event. */
  private waitingFor = '';
  readonly started = Date.now();

  constructor(readonly reply: StartReply, private readonly paint: Paint = plain) {
    this.guests = reply.guests ?? [];
    for (const g of this.guests) {
      this.names.set(g.vmid, g.name);
      this.phase.set(g.vmid, reply.kind === 'shutdown' ? 'running' : 'waiting');
    }
    for (const h of reply.held ?? []) {
      this.phase.set(h.vmid, 'held');
      this.why.set(h.vmid, `dependents still running: ${h.because.join(', ')}`);
    }
  }

  name(vmid: number | undefined): string {
    return vmid === undefined ? '' : `${vmid}${this.names.has(vmid) ? ` ${this.names.get(vmid)}` : ''}`;
  }

  apply(ev: WorkflowEvent): void {
    const p = PHASE_OF[ev.event];
    if (p && ev.vmid !== undefined) {
      this.phase.set(ev.vmid, p);
      const reason = (ev.detail as { reason?: string }).reason;
      if (reason) this.why.set(ev.vmid, reason);
    } else if (!ev.event.startsWith('GUEST.') && ev.event !== 'LAYER.DONE') {
      this.waitingFor = waitText(ev);
      this.headline = `${ev.event}${briefDetail(ev) ? `  ${briefDetail(ev)}` : ''}`.slice(0, 160);
    }
  }

  /** One line for logs and pipes. */
  line(ev: WorkflowEvent, ts: string): string {
    const p = PHASE_OF[ev.event];
    const color = p ? GLYPH[p][1] : ev.event.endsWith('ABORTED') || ev.event.endsWith('FAILED') ? 'red' : 'cyan';
    const where = [ev.layer !== undefined ? `layer ${ev.layer}` : '', ev.node ?? ''].filter(Boolean).join(' · ');
    return [this.paint(localTime(ts).slice(11), 'gray'), this.paint(ev.event.padEnd(17), color), this.name(ev.vmid), where ? this.paint(where, 'gray') : '', briefDetail(ev)].filter(Boolean).join('  ');
  }

  /** The live view: one row per layer, then who waits on what. */
  board(): string[] {
    const { kind, workflowId } = this.reply;
    const out = [this.paint(`${kind} ${workflowId}  ${secs(Date.now() - this.started)}`, 'bold')];
    if (this.headline) out.push(`  ${this.headline}`);
    const layers = [...new Set(this.guests.map((g) => g.layer))].sort((a, b) => (kind === 'shutdown' ? b - a : a - b));
    for (const layer of layers) {
      const row = this.guests.filter((g) => g.layer === layer).sort((a, b) => a.vmid - b.vmid);
      const cells = row.length > 24
        ? Object.entries(countBy(row.map((g) => this.phase.get(g.vmid)!))).map(([ph, n]) => this.paint(`${GLYPH[ph as Phase][0]} ${n} ${ph}`, GLYPH[ph as Phase][1]))
        : row.map((g) => {
          const ph = this.phase.get(g.vmid)!;
          return this.paint(`${GLYPH[ph][0]} ${g.name}`, GLYPH[ph][1]);
        });
      out.push(`  layer ${String(layer).padEnd(3)} ${cells.join('  ')}`);
    }
    const up = new Set(this.guests.filter((g) => ['healthy', 'skipped'].includes(this.phase.get(g.vmid)!)).map((g) => g.vmid));
    const notes: string[] = [];
    for (const g of this.guests) {
      const ph = this.phase.get(g.vmid)!;
      if (kind !== 'shutdown' && ph === 'waiting') {
        const on = g.dependsOn.filter((d) => this.phase.has(d) && !up.has(d));
        if (on.length) notes.push(`${this.name(g.vmid)} waits on ${on.map((d) => this.name(d)).join(', ')}`);
      } else if (ph === 'checking') notes.push(`${this.name(g.vmid)} started, waiting for its health check`);
      else if (ph === 'stopping') notes.push(`${this.name(g.vmid)} shutting down, waiting for it to stop`);
      else if (['failed', 'held', 'stuck', 'retry'].includes(ph) && this.why.has(g.vmid)) notes.push(`${this.name(g.vmid)} ${ph}: ${this.why.get(g.vmid)}`);
    }
    if (this.waitingFor) notes.unshift(this.waitingFor);
    const shown = notes.slice(0, 8);
    out.push(...shown.map((n) => this.paint(`  ${n}`, 'gray')));
    if (notes.length > shown.length) out.push(this.paint(`  … ${notes.length - shown.length} more`, 'gray'));
    out.push(`  ${Object.entries(countBy([...this.phase.values()])).map(([ph, n]) => `${ph} ${n}`).join(' · ')}`);
    out.push(this.paint(`  legend: ${LEGEND[kind === 'shutdown' ? 'shutdown' : 'boot'].map((p) => `${GLYPH[p][0]} ${LABEL[p] ?? p}`).join('  ')}`, 'gray'));
    return out;
  }
}

function countBy(xs: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const x of xs) out[x] = (out[x] ?? 0) + 1;
  return out;
}

export function renderPlan(reply: StartReply, paint: Paint = plain): string {
  const o = reply.output as { plan?: { waves: number[][]; blocked: { vmid: number; blockers: number[] }[] }; faults?: { kind: string; target: unknown; expect: string; sloMs: number }[]; skipped?: number[] } | undefined;
  const b = new WorkflowBoard(reply, paint);
  const out = [paint(`${reply.kind} plan (dry run, nothing was done)`, 'bold')];
  if (o?.plan) {
    o.plan.waves.forEach((w, i) => out.push(`  wave ${i + 1}: ${w.map((v) => b.name(v)).join(', ')}`));
    if (!o.plan.waves.length) out.push(`  nothing to do${reply.kind === 'boot' ? ': everything is already healthy' : ': everything is already stopped'}`);
    for (const x of o.plan.blocked) out.push(paint(`  blocked: ${b.name(x.vmid)} waits on ${x.blockers.map((v) => b.name(v)).join(', ')}`, 'red'));
    if (o.skipped?.length) out.push(paint(`  already done: ${o.skipped.map((v) => b.name(v)).join(', ')}`, 'gray'));
  }
  for (const h of reply.held ?? []) out.push(paint(`  held: ${b.name(h.vmid)} (dependents still running: ${h.because.join(', ')})`, 'red'));
  if (reply.protectedKept?.length) out.push(paint(`  left running: ${reply.protectedKept.map((v) => b.name(v)).join(', ')} (protected, or needed by a protected guest; --include-protected shuts them down too, after an operator's approval)`, 'yellow'));
  for (const f of o?.faults ?? []) out.push(`  inject ${f.kind} on ${String(f.target)}, expect ${f.expect}, SLO ${secs(f.sloMs)}`);
  return out.join('\n');
}

export function renderResult(r: WorkflowResult, board: WorkflowBoard | undefined, paint: Paint = plain): string {
  const ok = r.status === 'done';
  const head = paint(`${r.kind} ${r.workflowId}: ${r.status}`, ok ? 'green' : 'red');
  const name = (v: number) => board?.name(v) ?? String(v);
  const list = (label: string, xs: number[] | undefined, color: Parameters<Paint>[1]) => (xs?.length ? [paint(`  ${label} (${xs.length}): ${xs.map(name).join(', ')}`, color)] : []);
  const reasons = (rs: Record<string, string> | undefined) => Object.entries(rs ?? {}).map(([v, why]) => paint(`    ${name(Number(v))}: ${why}`, 'gray'));
  const out = [head];
  if (r.kind === 'boot') {
    const o = r.output as BootSummary;
    out.push(...list('healthy', o.healthy, 'green'), ...list('already healthy', o.skipped, 'gray'), ...list('failed', o.failed, 'red'), ...list('held', o.held, 'red'));
    if (o.durationMs !== undefined) out.push(`  wall time ${secs(o.durationMs)}`);
    out.push(...reasons(o.reasons));
  } else if (r.kind === 'shutdown') {
    const o = r.output as ShutdownSummary;
    out.push(...list('stopped', o.stopped, 'green'), ...list('hard-stopped', o.hardStopped, 'yellow'), ...list('already stopped', o.skipped, 'gray'), ...list('stuck', o.stuck, 'red'), ...list('held', o.held, 'red'));
    out.push(...reasons(o.reasons));
  } else if (r.kind === 'failover') {
    const o = r.output as FailoverReport;
    if (o.reason) out.push(paint(`  ${o.reason}`, o.aborted ? 'red' : 'gray'));
    out.push(`  fence confirmed: ${o.fenceConfirmed ? 'yes' : 'no'} · fenced: ${o.fenced ? 'yes' : 'no'}`);
    for (const x of o.recovered) out.push(paint(`  recovered ${name(x.vmid)} on ${x.to}`, 'green'));
    out.push(...list('failed', o.failed, 'red'), ...list('unplaced (no capacity)', o.unplaced, 'red'), ...list('held', o.held, 'red'), ...reasons(o.reasons));
    if (o.verification && !o.verification.ok) out.push(paint(`  verification: ${[...(o.verification.problems ?? []), o.verification.error ?? ''].filter(Boolean).join('; ')}`, 'red'));
  } else if ((r.output as { error?: string })?.error) {
    out.push(paint(`  ${(r.output as { error: string }).error}`, 'red'));
  }
  return out.join('\n');
}
