// `trace <incidentId>`: the causal chain event → alert → incident → decision → action → task →
// verification, rebuilt from the FLEET stream by correlation and causation ids.
import { HomeostatError } from '../../core/mod.ts';
import { Incident, kvGet, kvKeys, replayStored, type Bus, type Envelope } from '../../bus/mod.ts';

export type TraceStep = 'event' | 'alert' | 'incident' | 'decision' | 'action' | 'task' | 'verification' | 'workflow' | 'other';

export interface TraceEntry {
  step: TraceStep;
  ts: string;
  subject: string;
  type: string;
  id: string;
  causationId?: string;
  summary: string;
  data: unknown;
}

export interface Trace {
  incident: Incident;
  correlationIds: string[];
  entries: TraceEntry[];
  actionIds: string[];
}

function stepOf(subject: string, type: string): TraceStep {
  if (subject.startsWith('fleet.events.')) return 'event';
  if (subject.startsWith('fleet.alerts.')) return 'alert';
  if (subject.startsWith('fleet.incidents.')) return 'incident';
  if (subject.startsWith('fleet.decisions.')) return 'decision';
  if (subject.startsWith('fleet.workflows.')) return 'workflow';
  if (subject.startsWith('fleet.actions.')) {
    if (type === 'ActionStarted') return 'task';
    if (type === 'ActionSucceeded') return 'verification';
    return 'action';
  }
  return 'other';
}

export function summarizeEntry(subject: string, env: Envelope): string {
  const d = (env.data ?? {}) as Record<string, any>;
  switch (stepOf(subject, env.type)) {
    case 'event':
    {
      const change = d.previousState && d.previousState !== d.state ? `${d.previousState} → ${d.state}` : d.state ?? d.status;
      const reason = d.reason && !String(d.reason).includes(String(change)) ? d.reason : '';
      return [d.name ?? d.vmid ?? d.node, d.name && d.vmid ? `(${d.vmid})` : '', change, d.health ? `health ${d.health}` : '', reason].filter(Boolean).join(' ');
    }
    case 'alert':
      return `${d.name} ${d.status}: ${d.summary ?? ''}`;
    case 'incident':
    {
      // how it ended or who has it: the last timeline entry (a hand-resolve carries its reason there)
      const last = Array.isArray(d.timeline) ? d.timeline.at(-1)?.what : undefined;
      const how = (env.type === 'IncidentResolved' || env.type === 'IncidentAcknowledged') && last ? ` — ${last}` : '';
      return `${d.id} ${env.type === 'IncidentAcknowledged' ? 'acknowledged' : d.status} — ${d.title ?? ''} (root cause ${d.rootCause?.vmid ?? d.rootCause?.node ?? '?'}: ${d.rootCause?.reason ?? ''}${d.symptoms?.length ? `; ${d.symptoms.length} symptom(s)` : ''})${how}`;
    }
    case 'decision':
      return `${d.proposer} proposes ${d.verb}${d.target?.vmid ? ` ${d.target.vmid}` : d.target?.node ? ` ${d.target.node}` : ''} → ${d.verdict}${d.reasons?.length ? ` (${d.reasons.join('; ')})` : ''}`;
    case 'task':
      return `${d.verb} ${d.target?.vmid} started${d.upid ? ` — PVE task ${d.upid}` : ''}`;
    case 'verification':
      return `${d.verb} ${d.target?.vmid} succeeded${d.verified ? ', verified healthy' : ''}`;
    case 'action':
      return `${env.type.replace('Action', '').toLowerCase()} ${d.verb} ${d.target?.vmid ?? ''} [${d.actionId}]${d.error ? ` — ${d.error.code}: ${d.error.message}` : ''}`;
    case 'workflow':
      return `${d.kind} ${d.workflowId} ${d.event}${d.vmid ? ` ${d.vmid}` : ''}`;
    default:
      return env.type;
  }
}

export async function traceIncident(bus: Bus, incidentId: string, opts: { windowBeforeMs?: number } = {}): Promise<Trace> {
  const rec = await kvGet(bus.kv.incidents, kvKeys.incident(incidentId), Incident);
  if (!rec) throw new HomeostatError('HOMEOSTAT_ERR_NOT_FOUND', `no incident ${JSON.stringify(incidentId)}`);
  const incident = rec.value;
  const since = new Date(Date.parse(incident.openedAt) - (opts.windowBeforeMs ?? 5 * 60_000));
  const byId = new Map<string, { subject: string; env: Envelope }>();
  const all: { subject: string; env: Envelope }[] = [];
  for (const ev of await replayStored(bus, 'fleet.>', since)) {
    if (ev.invalid) continue;
    const item = { subject: ev.subject, env: ev.env };
    byId.set(ev.env.id, item);
    all.push(item);
  }
  const keep = new Set<string>();
  const corr = new Set<string>();
  // the incident's own messages anchor the chain
  for (const it of all) {
    const d = it.env.data as Record<string, any>;
    const mine =
      it.subject.startsWith(`fleet.incidents.${incidentId}.`) ||
      it.subject === `fleet.decisions.${incidentId}` ||
      (it.subject.startsWith('fleet.actions.') && d?.incidentId === incidentId);
    if (mine) {
      keep.add(it.env.id);
      corr.add(it.env.correlationId);
    }
  }
  for (const it of all) if (corr.has(it.env.correlationId)) keep.add(it.env.id);
  // actions carry their id across phases; include every phase of the incident's actions
  const actionIds = new Set<string>();
  for (const id of keep) {
    const d = byId.get(id)?.env.data as Record<string, any> | undefined;
    if (byId.get(id)?.subject.startsWith('fleet.actions.') && d?.actionId) actionIds.add(d.actionId);
  }
  for (const it of all) {
    const d = it.env.data as Record<string, any>;
    if (it.subject.startsWith('fleet.actions.') && actionIds.has(d?.actionId)) keep.add(it.env.id);
  }
  // walk causation links back to the triggering events and alerts
  const queue = [...keep];
  while (queue.length) {
    const c = byId.get(queue.pop()!)?.env.causationId;
    if (c && byId.has(c) && !keep.has(c)) {
      keep.add(c);
      queue.push(c);
    }
  }
  const entries = [...keep]
    .map((id) => byId.get(id)!)
    .sort((a, b) => a.env.ts.localeCompare(b.env.ts))
    .map(({ subject, env }) => ({ step: stepOf(subject, env.type), ts: env.ts, subject, type: env.type, id: env.id, causationId: env.causationId, summary: summarizeEntry(subject, env), data: env.data }));
  return { incident, correlationIds: [...corr], entries, actionIds: [...actionIds] };
}
