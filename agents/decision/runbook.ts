// The runbook table: what to do next for an incident, given what was already tried for it.
// Pure: the engine feeds it the incident and the steps so far; the policy gate judges the answer.
import type { ActionVerb, Incident, Proposer } from '../../bus/mod.ts';

export type StepStatus = 'requested' | 'approved' | 'started' | 'succeeded' | 'failed' | 'denied' | 'dry-run';

/** One action taken (or asked for) for an incident. */
export interface Step {
  actionId: string;
  vmid: number;
  verb: ActionVerb;
  attempt: number;
  status: StepStatus;
  proposer: Proposer;
  at: number;
  doneAt?: number;
  errorCode?: string;
  /** The ActionApproved/ActionRequested was accepted by JetStream. */
  published?: boolean;
}

export type Plan =
  | { kind: 'act'; verb: ActionVerb; rationale: string; hung?: boolean; continuation?: boolean; uncertain?: string }
  | { kind: 'notify'; rationale: string; uncertain?: string }
  | { kind: 'failover'; node: string; rationale: string }
  | { kind: 'wait'; until: number; rationale: string }
  | { kind: 'done'; rationale: string };

export const IN_FLIGHT: readonly StepStatus[] = ['requested', 'approved', 'started'];

const NOTIFY_ALERTS: Record<string, string> = {
  DiskFull: 'disk almost full: free space or grow the disk (homeostat never changes config)',
  HighCPU: 'sustained high CPU: check the workload; no automatic remediation',
  HighMemory: 'sustained high memory: check the workload; no automatic remediation',
  CertExpiring: 'certificate expires soon: renew it; no automatic remediation',
  PveUnavailable: 'the PVE API is unavailable: check the host and PVE_URL; nothing can be executed meanwhile',
  External: 'external alert: operator attention needed',
};

/** Verbs the runbook table itself would use for a failure mode: an LLM proposal outside them needs approval. */
export function runbookVerbs(alert: string | undefined): readonly ActionVerb[] {
  if (alert === 'GuestDown') return ['start'];
  if (alert === 'HealthCheckFailed') return ['reboot', 'stop', 'start'];
  return [];
}

/**
 * `stillFailing`: does fresh evidence (sensing's record, written after the last step finished)
 * show the guest failing again? After a verified success only such evidence makes a repeat: an
 * incident that merely stays open (analysis waits for symptoms to clear) is not a new failure.
 */
export function nextStep(inc: Incident, steps: readonly Step[], now: number, settleMs: number, stillFailing?: boolean): Plan {
  const alert = inc.rootCause.alert;
  if (inc.kind === 'node' || alert === 'NodeDown') {
    return inc.rootCause.node
      ? { kind: 'failover', node: inc.rootCause.node, rationale: `node ${inc.rootCause.node} is down: fail its guests over` }
      : { kind: 'notify', rationale: 'a node is down but the incident does not name it: operator action needed' };
  }
  if (inc.kind === 'flapping') return { kind: 'notify', rationale: `${inc.title}: automatic remediation is on hold until an operator clears it` };
  if (alert && NOTIFY_ALERTS[alert]) return { kind: 'notify', rationale: NOTIFY_ALERTS[alert] };
  if (inc.kind !== 'guest' || inc.rootCause.vmid === undefined) {
    return { kind: 'notify', rationale: `${inc.kind} incident: operator attention needed`, uncertain: inc.kind === 'guest' ? 'no guest named' : undefined };
  }
  const last = steps.at(-1);
  if (last && (last.status === 'denied' || last.status === 'dry-run')) {
    return { kind: 'done', rationale: last.status === 'denied' ? `${last.verb} was denied: leaving it to the operator` : 'dry-run: nothing more to decide' };
  }
  // after a verified success, give the sensors time to see the guest healthy before calling it a repeat
  const settling = last?.status === 'succeeded' && last.doneAt !== undefined && now - last.doneAt < settleMs;
  if (settling) return { kind: 'wait', until: last.doneAt! + settleMs, rationale: `${last.verb} succeeded; waiting for the incident to resolve` };
  const continues = last?.verb === 'stop' && alert === 'HealthCheckFailed';
  if (last?.status === 'succeeded' && !continues && !stillFailing) {
    return { kind: 'wait', until: now + settleMs, rationale: `${last.verb} succeeded and nothing shows a new failure; waiting for the incident to resolve` };
  }

  if (alert === 'GuestDown') return guestDown(steps);
  if (alert === 'HealthCheckFailed') return healthFailing(steps);
  return { kind: 'notify', rationale: `unknown failure mode${alert ? ` ${alert}` : ''}: operator attention needed`, uncertain: `unknown failure mode ${alert ?? inc.rootCause.reason}` };
}

function guestDown(steps: readonly Step[]): Plan {
  const starts = steps.filter((s) => s.verb === 'start');
  const failed = starts.filter((s) => s.status === 'failed').length;
  if (!starts.length) return { kind: 'act', verb: 'start', rationale: 'guest stopped while it should run: start it' };
  if (failed >= 2) return { kind: 'notify', rationale: `start failed ${failed} times: operator action needed`, uncertain: `start failed ${failed} times` };
  const why = steps.at(-1)?.status === 'failed' ? 'the last start failed' : 'the guest went down again after a verified start';
  return { kind: 'act', verb: 'start', rationale: `${why}: start it again`, uncertain: why };
}

function healthFailing(steps: readonly Step[]): Plan {
  const last = steps.at(-1);
  const escalated = steps.some((s) => s.verb === 'stop' || s.verb === 'reboot');
  if (!last || !escalated) return { kind: 'act', verb: 'reboot', rationale: 'guest runs but fails its health checks: reboot it' };
  if (last.verb === 'reboot') {
    const why = last.status === 'failed' ? 'the reboot failed' : 'still unhealthy after a reboot';
    return { kind: 'act', verb: 'stop', hung: true, rationale: `${why}: the guest is hung; stop it, then start it` };
  }
  if (last.verb === 'stop') {
    if (last.status === 'succeeded') return { kind: 'act', verb: 'start', continuation: true, rationale: 'hung guest stopped: start it again' };
    return { kind: 'notify', rationale: 'could not even stop the hung guest: operator action needed', uncertain: 'stop of a hung guest failed' };
  }
  if (last.verb === 'start' && last.status === 'failed' && steps.some((s) => s.verb === 'stop')) {
    return { kind: 'notify', rationale: 'start after stop failed: operator action needed', uncertain: 'start after stop failed' };
  }
  return { kind: 'notify', rationale: 'still unhealthy after a reboot and a stop+start: operator action needed', uncertain: 'reboot and stop+start did not help' };
}
