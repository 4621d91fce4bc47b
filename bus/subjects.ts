// The only place subject strings are built. Every token that comes from data is escaped so a
// node named "a.b" or a guest called "x>" cannot widen a subscription.

export const ROOT = 'fleet';

/** A subject token built from data: no dots, spaces or wildcards. */
export function token(value: string | number): string {
  const s = String(value).replace(/[^A-Za-z0-9_-]/g, '_');
  return s.length ? s : '_';
}

export type ActionPhase = 'requested' | 'approved' | 'denied' | 'started' | 'succeeded' | 'failed' | 'rejected';
export type IncidentPhase = 'opened' | 'updated' | 'acknowledged' | 'resolved';

export const subjects = {
  guestEvent: (node: string, vmid: number) => `${ROOT}.events.guest.${token(node)}.${token(vmid)}`,
  nodeEvent: (node: string) => `${ROOT}.events.node.${token(node)}`,
  /** The PVE API as a whole (PveUnavailable / PveAvailable). */
  apiEvent: () => `${ROOT}.events.api`,
  /** An agent about itself (AgentStalled / AgentRecovered). */
  agentEvent: (agent: string) => `${ROOT}.events.agent.${token(agent)}`,
  metrics: (node: string, vmid: number | 'node') => `${ROOT}.metrics.${token(node)}.${token(vmid)}`,
  alert: (name: string) => `${ROOT}.alerts.${token(name)}`,
  incident: (id: string, phase: IncidentPhase) => `${ROOT}.incidents.${token(id)}.${phase}`,
  decision: (incidentId: string) => `${ROOT}.decisions.${token(incidentId)}`,
  action: (phase: ActionPhase) => `${ROOT}.actions.${phase}`,
  /** Workflow progress; `event` is the machine's own event name, e.g. GUEST.HEALTHY (dots kept as tokens). */
  workflow: (kind: string, id: string, event: string) =>
    `${ROOT}.workflows.${token(kind)}.${token(id)}.${event.split('.').map(token).join('.')}`,
  /** `verb` may be dotted (chaos.run); each part is a token. */
  cmd: (verb: string) => `${ROOT}.cmd.${verb.split('.').map(token).join('.')}`,
  chat: () => `${ROOT}.chat`,
  /** Request/reply from the workflows agent to the decision agent: `action` or `fence`. */
  propose: (what: 'action' | 'fence') => `${ROOT}.propose.${what}`,
  dlq: (original: string) => `${ROOT}.dlq.${original}`,
} as const;

/** Wildcards for subscribers. */
export const patterns = {
  all: `${ROOT}.>`,
  events: `${ROOT}.events.>`,
  guestEvents: `${ROOT}.events.guest.>`,
  nodeEvents: `${ROOT}.events.node.>`,
  agentEvents: `${ROOT}.events.agent.>`,
  metrics: `${ROOT}.metrics.>`,
  alerts: `${ROOT}.alerts.>`,
  incidents: `${ROOT}.incidents.>`,
  decisions: `${ROOT}.decisions.>`,
  actions: `${ROOT}.actions.>`,
  workflows: `${ROOT}.workflows.>`,
  workflowsOf: (kind: string, id: string) => `${ROOT}.workflows.${token(kind)}.${token(id)}.>`,
  cmd: `${ROOT}.cmd.>`,
  propose: `${ROOT}.propose.>`,
  dlq: `${ROOT}.dlq.>`,
} as const;

/** Subjects owned by the AUDIT stream (long retention, action-id dedup). */
export const AUDIT_STREAM_SUBJECTS = [patterns.actions, patterns.decisions];
/** Subjects owned by FLEET; it also sources all of AUDIT, so FLEET holds every persisted subject. */
export const FLEET_OWN_SUBJECTS = [patterns.events, patterns.alerts, patterns.incidents, patterns.workflows, patterns.dlq];
/** Everything persisted (metrics, cmd and chat are core NATS only). */
export const FLEET_STREAM_SUBJECTS = [...FLEET_OWN_SUBJECTS, ...AUDIT_STREAM_SUBJECTS];

/** Does a concrete subject match a NATS pattern (with * and >)? */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

/** Is every subject matched by `pattern` persisted in FLEET? */
export function coveredByFleetStream(pattern: string): boolean {
  return FLEET_STREAM_SUBJECTS.some((streamPattern) => patternWithin(pattern, streamPattern));
}

/** True when every subject matching `inner` also matches `outer`. */
export function patternWithin(inner: string, outer: string): boolean {
  const a = inner.split('.');
  const b = outer.split('.');
  for (let i = 0; i < b.length; i++) {
    if (b[i] === '>') return a.length > i;
    if (i >= a.length) return false;
    if (a[i] === '>') return false;
    if (b[i] === '*') continue;
    if (a[i] === '*' || a[i] !== b[i]) return false;
  }
  return a.length === b.length;
}
