// The chaos report for people: verdict, per-fault MTTR against the SLO, rollback, and the timeline
// rebuilt from the workflow's own events (kept in the FLEET stream, so it can be rebuilt later).
import { replayStored, type Action, type Bus, type Decision, type Incident, type WorkflowEvent } from '../bus/mod.ts';
import type { ChaosReport } from '../state-machines/mod.ts';
import type { FollowedEvent } from './follow.ts';
import { secs, type Paint } from './render.ts';

export interface TimelineEntry {
  at: string;
  offsetMs: number;
  event: string;
  what: string;
}

export function chaosTimeline(events: FollowedEvent[]): TimelineEntry[] {
  const t0 = events.length ? Date.parse(events[0].env.ts) : 0;
  return events.map(({ env }) => {
    const d = env.data.detail as Record<string, unknown>;
    const f = d as { kind?: string; target?: unknown; mttrMs?: number };
    let what = '';
    if (env.data.event.startsWith('FAULT.')) what = `${f.kind} on ${String(f.target)}${f.mttrMs !== undefined ? ` (MTTR ${secs(f.mttrMs)})` : ''}`;
    else if (env.data.event.startsWith('STEADY_STATE.')) what = `${String(d.phase)}${Array.isArray(d.failures) && d.failures.length ? `: ${(d.failures as string[]).join('; ')}` : ''}`;
    else if (typeof d.reason === 'string') what = d.reason;
    else if (typeof d.error === 'string') what = d.error;
    else if (env.data.event === 'WORKFLOW.ENDED') what = String(d.status);
    return { at: env.ts, offsetMs: Date.parse(env.ts) - t0, event: env.data.event, what };
  });
}

const HEALING_STEPS = new Set(['FENCE.CONFIRMED', 'NODE.FENCED', 'FAILOVER.DONE', 'FAILOVER.ABORTED', 'BOOT.DONE']);

/** What homeostat did meanwhile (incidents, decisions, actions, other workflows), from the stream:
 *  the story between "fault injected" and "healed". Bounded, ordered, relative to `t0`. */
export async function healingTimeline(bus: Bus, chaosWorkflowId: string, from: Date, to: Date, t0 = from.getTime(), limit = 60): Promise<TimelineEntry[]> {
  const out: TimelineEntry[] = [];
  for (const ev of await replayStored(bus, 'fleet.>', from, 50_000)) {
    const ts = Date.parse(ev.env.ts);
    if (ev.invalid || ts > to.getTime()) continue;
    const s = ev.subject;
    let what: string | undefined;
    if (s.startsWith('fleet.incidents.') && /\.(opened|resolved)$/.test(s)) {
      const i = ev.env.data as Incident;
      what = `${i.id} ${i.status === 'open' ? 'opened' : 'resolved'}: ${i.title}`;
    } else if (s.startsWith('fleet.decisions.')) {
      const d = ev.env.data as Decision;
      what = `${d.proposer} decides ${d.verb} ${d.target.vmid ?? d.target.node ?? ''} → ${d.verdict}`;
    } else if (/^fleet\.actions\.(started|succeeded|failed)$/.test(s)) {
      const a = ev.env.data as Action;
      if (a.workflowId === chaosWorkflowId) continue;
      what = `${a.verb} ${a.target.vmid} ${s.split('.').pop()}${a.error ? `: ${a.error.message.slice(0, 80)}` : ''}`;
    } else if (s.startsWith('fleet.workflows.') && !s.includes(`.${chaosWorkflowId}.`)) {
      const w = ev.env.data as WorkflowEvent;
      if (HEALING_STEPS.has(w.event)) what = `${w.kind} ${w.workflowId}${w.node ? ` ${w.node}` : ''}`;
    }
    if (what) out.push({ at: ev.env.ts, offsetMs: ts - t0, event: s.startsWith('fleet.workflows.') ? (ev.env.data as WorkflowEvent).event : ev.env.type, what });
    if (out.length >= limit) break;
  }
  return out;
}

export function renderChaosReport(r: ChaosReport, timeline: TimelineEntry[], paint: Paint): string {
  const verdict = r.dryRun ? paint('DRY RUN', 'yellow') : r.passed ? paint('PASS', 'green') : paint('FAIL', 'red');
  const out = [paint(`chaos ${r.experiment} (${r.workflowId}): `, 'bold') + verdict];
  if (r.reason) out.push(paint(`  ${r.aborted ? 'aborted: ' : ''}${r.reason}`, r.passed ? 'gray' : 'red'));
  const ss = (v: boolean | undefined) => (v === undefined ? 'not checked' : v ? 'held' : 'FAILED');
  out.push(`  steady state before: ${ss(r.steadyStateBefore)} · after: ${ss(r.steadyStateAfter)}`);
  const t0 = r.faults.find((f) => f.injectedAt !== undefined)?.injectedAt;
  const rows = [['#', 'FAULT', 'TARGET', 'EXPECT', 'INJECTED', 'HEALED', 'MTTR', 'SLO', '']];
  for (const f of r.faults) {
    const rel = (t?: number) => (t === undefined || t0 === undefined ? '-' : `+${secs(t - t0)}`);
    const ok = f.withinSlo ? paint('✓ within SLO', 'green') : f.injectedAt === undefined ? paint('✗ not injected', 'red') : paint('✗ over SLO / not healed', 'red');
    rows.push([String(f.index), f.kind, String(f.target), f.expect, rel(f.injectedAt), rel(f.healedAt), f.mttrMs === undefined ? '-' : secs(f.mttrMs), secs(f.sloMs), f.error ? paint(f.error, 'red') : ok]);
  }
  out.push('', ...table(rows).map((l) => `  ${l}`), '');
  out.push(`  rollback: ${r.rollback.ran ? (r.rollback.ok ? paint('done', 'green') : paint(`FAILED: ${r.rollback.error ?? ''}`, 'red')) : paint('did not run', 'red')}`);
  if (timeline.length) {
    out.push('', paint('  timeline', 'bold'));
    for (const e of timeline) out.push(`  ${paint(`${`+${(e.offsetMs / 1000).toFixed(3)}`.padStart(9)} s`, 'gray')}  ${e.event.padEnd(17)} ${e.what}`);
  }
  return out.join('\n');
}

function table(rows: string[][]): string[] {
  const strip = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '');
  const w: number[] = [];
  for (const r of rows) r.forEach((c, i) => (w[i] = Math.max(w[i] ?? 0, strip(c).length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(w[i] - strip(c).length))).join('  '));
}
