// Which messages need a human, as group operations. Chosen by envelope type (and, for incidents,
// by kind): a "needs a human" verdict, an approval waiting, an incident the loop does not heal by
// itself (flapping hold-down, and any kind it does not know, such as the loop's own "cannot do my
// job" incident), and the end of a failover or chaos run. The resolution of each closes its item.
import type { Action, Decision, Envelope, Incident, WorkflowEvent } from '../../bus/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import type { Op } from './model.ts';

/** Incident kinds the loop remediates itself: a human hears of them through a decision (notify
 *  verdict, approval), not through the incident. Every other kind goes to people directly: a
 *  flapping hold-down, the PVE API out of reach, the loop's own ("self") incidents, new kinds. */
const HEALED_KINDS = new Set(['guest', 'node', 'resource', 'external']);

/** The durable consumers the agent runs: filters the server can apply (no multi-filter on 2.9). */
export const NOTIFY_SOURCES = [
  { durable: 'notify-decisions', filter: 'fleet.decisions.>' },
  { durable: 'notify-actions', filter: 'fleet.actions.>' },
  { durable: 'notify-incidents', filter: 'fleet.incidents.>' },
  { durable: 'notify-workflows', filter: 'fleet.workflows.*.*.WORKFLOW.ENDED' },
] as const;

const incidentGroup = (id: string) => `incident:${id}`;

function guestLabel(fleet: Fleet, vmid: number | undefined, node?: string): string {
  if (vmid === undefined) return node ? `node ${node}` : 'the fleet';
  const name = fleet.byVmid.get(vmid)?.name;
  return name ? `${name} (${vmid})` : String(vmid);
}

function approvalGroup(a: Action): string {
  if (a.incidentId) return incidentGroup(a.incidentId);
  if (a.workflowId) return `workflow:${a.workflowId}`;
  return `guest:${a.target.vmid}`;
}

function fromDecision(d: Decision, ts: string, fleet: Fleet): Op[] {
  if (d.verdict !== 'notify') return [];
  return [{
    op: 'upsert', group: incidentGroup(d.incidentId), item: {
      key: `decision:${d.incidentId}`, kind: 'decision', status: 'firing', severity: 'warning',
      title: `Needs a human: ${guestLabel(fleet, d.target.vmid, d.target.node)}`,
      text: d.rationale, hint: `homeostat trace ${d.incidentId}`,
      incidentId: d.incidentId, vmid: d.target.vmid, node: d.target.node, at: ts,
    },
  }];
}

function fromAction(type: string, a: Action, ts: string, fleet: Fleet): Op[] {
  if (!a.needsApproval) return [];
  const group = approvalGroup(a);
  const key = `approval:${a.actionId}`;
  if (type === 'ActionRequested') {
    return [{
      op: 'upsert', group, item: {
        key, kind: 'approval', status: 'firing', severity: 'warning',
        title: `Approval waiting: ${a.verb} ${guestLabel(fleet, a.target.vmid)}`,
        text: `${a.proposer} proposes to ${a.verb} ${guestLabel(fleet, a.target.vmid)} on ${a.target.node}${a.rationale ? `: ${a.rationale}` : ''}`,
        hint: `homeostat approve ${a.actionId}  (or: homeostat deny ${a.actionId})`,
        actionId: a.actionId, incidentId: a.incidentId, workflowId: a.workflowId, vmid: a.target.vmid, node: a.target.node, at: ts,
      },
    }];
  }
  if (type === 'ActionApproved' || type === 'ActionDenied') {
    const by = a.approval?.by ?? 'policy';
    const how = type === 'ActionApproved' ? `approved by ${by}` : `denied by ${by}${a.approval?.reason ? `: ${a.approval.reason}` : ''}`;
    const ops: Op[] = [{ op: 'resolve', group, key, resolution: how, at: ts }];
    // nobody approved in time (or the gate refused it then): the fix did not happen, and the
    // loop leaves the guest to people, so they hear of it (until the incident closes)
    if (type === 'ActionDenied' && by.startsWith('policy:')) {
      ops.push({
        op: 'upsert', group, item: {
          key: `denied:${a.actionId}`, kind: 'decision', status: 'firing', oneShot: !a.incidentId, severity: 'warning',
          title: `Not done: ${a.verb} ${guestLabel(fleet, a.target.vmid)}`,
          text: `${a.approval?.reason ?? 'denied by the policy gate'}; homeostat leaves ${guestLabel(fleet, a.target.vmid)} as it is: operator action needed`,
          hint: a.incidentId ? `homeostat trace ${a.incidentId}` : undefined,
          actionId: a.actionId, incidentId: a.incidentId, workflowId: a.workflowId, vmid: a.target.vmid, node: a.target.node, at: ts,
        },
      });
    }
    return ops;
  }
  return [];
}

function fromIncident(type: string, i: Incident, ts: string, fleet: Fleet): Op[] {
  if (type === 'IncidentResolved') return [{ op: 'resolve', group: incidentGroup(i.id), resolution: `incident ${i.id} resolved`, at: ts }];
  if (type === 'IncidentAcknowledged') return [{ op: 'ack', group: incidentGroup(i.id), by: i.acknowledged?.by ?? 'an operator', at: i.acknowledged?.at ?? ts }];
  if (HEALED_KINDS.has(i.kind) || i.status !== 'open') return [];
  const last = i.timeline.at(-1)?.what;
  return [{
    op: 'upsert', group: incidentGroup(i.id), item: {
      key: `incident:${i.id}`, kind: 'incident', status: 'firing', severity: i.severity, title: i.title,
      text: `${i.kind} incident on ${guestLabel(fleet, i.rootCause.vmid, i.rootCause.node)}: ${i.rootCause.reason}${last && last !== i.rootCause.reason ? ` (${last})` : ''}`,
      hint: i.kind === 'flapping' && i.rootCause.vmid !== undefined ? `homeostat trace ${i.id}; clear the hold-down when fixed` : `homeostat trace ${i.id}`,
      incidentId: i.id, vmid: i.rootCause.vmid, node: i.rootCause.node, at: ts,
    },
  }];
}

const count = (v: unknown) => (Array.isArray(v) ? v.length : 0);
const text = (v: unknown) => (typeof v === 'string' ? v : undefined);

function fromWorkflow(w: WorkflowEvent, ts: string): Op[] {
  const status = text(w.detail.status) ?? 'done';
  const out = (typeof w.detail.output === 'object' && w.detail.output !== null ? w.detail.output : {}) as Record<string, unknown>;
  const ok = status === 'done';
  let title: string;
  let body: string;
  let bad = !ok;
  if (w.kind === 'failover') {
    const failed = count(out.failed) + count(out.unplaced);
    bad ||= failed > 0 || out.aborted === true;
    title = `Failover of ${text(out.node) ?? w.node ?? 'a node'} ${out.aborted === true ? 'aborted' : ok ? 'done' : status}`;
    body = `${count(out.recovered)} guests recovered elsewhere, ${count(out.failed)} failed, ${count(out.unplaced)} without room, ${count(out.held)} held for approval${text(out.reason) ? `; ${text(out.reason)}` : ''}`;
  } else if (w.kind === 'chaos') {
    const faults = Array.isArray(out.faults) ? (out.faults as { kind?: string; target?: unknown; mttrMs?: number; withinSlo?: boolean }[]) : [];
    bad ||= out.passed !== true && out.dryRun !== true;
    title = `Chaos experiment ${text(out.experiment) ?? w.workflowId} ${out.dryRun === true ? 'dry run done' : out.passed === true ? 'passed' : 'failed'}`;
    body = faults.map((f) => `${f.kind} on ${String(f.target)}: ${f.mttrMs !== undefined ? `MTTR ${(f.mttrMs / 1000).toFixed(1)} s` : 'not healed'}${f.withinSlo === false ? ' (over the SLO)' : ''}`).join('; ')
      || text(out.reason) || status;
  } else {
    if (ok) return []; // a boot or shutdown that went as planned needs nobody
    title = `${w.kind} workflow ${status}`;
    body = text(w.detail.error) ?? text(out.reason) ?? `${w.kind} ${w.workflowId} ended ${status}`;
  }
  return [{
    op: 'upsert', group: `workflow:${w.workflowId}`, item: {
      key: `workflow:${w.workflowId}`, kind: 'workflow', status: 'firing', oneShot: true, severity: bad ? 'warning' : 'info',
      title, text: body.slice(0, 2000), hint: `homeostat events --subject 'fleet.workflows.${w.kind}.${w.workflowId}.>' --since 1d --no-follow`,
      workflowId: w.workflowId, node: w.node, at: ts,
    },
  }];
}

/** What one message means for notifications (nothing for most). */
export function opsFor(env: Envelope, fleet: Fleet): Op[] {
  switch (env.type) {
    case 'DecisionMade':
      return fromDecision(env.data as Decision, env.ts, fleet);
    case 'ActionRequested':
    case 'ActionApproved':
    case 'ActionDenied':
      return fromAction(env.type, env.data as Action, env.ts, fleet);
    case 'IncidentOpened':
    case 'IncidentUpdated':
    case 'IncidentResolved':
      return fromIncident(env.type, env.data as Incident, env.ts, fleet);
    case 'WorkflowEvent':
      return (env.data as WorkflowEvent).event === 'WORKFLOW.ENDED' ? fromWorkflow(env.data as WorkflowEvent, env.ts) : [];
    default:
      return [];
  }
}
