// The policy gate: the last word on every proposal, from the runbook, the LLM, an operator, chat, a
// workflow (boot, shutdown, failover) or a chaos experiment. Pure and deterministic: everything it
// looks at comes in as facts, so the same input always gives the same verdict (DESIGN.md "Safety
// rules"). Every proposer reaches it through the decision agent, which alone signs what it allows.
import { ActionVerb, type Proposer, type Verdict } from '../../bus/mod.ts';
import type { Policies } from '../../fleet/manifest.ts';

/** A proposed remediation. `verb` is a plain string on purpose: an LLM may say anything. */
export interface Proposal {
  verb: string;
  vmid?: number;
  proposer: Proposer;
  /** The runbook table lists this verb for the incident's failure mode. */
  inRunbook: boolean;
  targetNode?: string;
  snapname?: string;
  /** The workflow (boot, shutdown, failover, chaos) proposing it. */
  workflowId?: string;
}

export interface GateFacts {
  now: number;
  /** The guest as the fleet manifest has it; undefined when the vmid is not in the fleet. */
  guest?: { vmid: number; node: string; protected: boolean };
  desired?: { state: 'running' | 'stopped'; maintenance: boolean; by?: string };
  /** The incident's root-cause guest (runbook and LLM proposals). */
  rootCause?: number;
  /** A workflow's proposal: `automatic` when the decision agent started it (a node incident), not an operator. */
  workflow?: { automatic: boolean };
  /** The guest is listed as a symptom of another incident's root cause. */
  isSymptom?: boolean;
  /** A shutdown or reboot of this guest failed in this incident: it is hung. */
  hung?: boolean;
  /** Set in a failover: the source node and whether it is fenced. */
  failover?: { sourceNode: string; fenced: boolean };
  /** The proposal is a chaos experiment rolling back its own snapshot. */
  chaosRollback?: boolean;
  /** A flap hold-down is in place for this guest (until an operator clears it). */
  held?: boolean;
  /** An action on this guest is waiting for approval, queued or running. */
  busy?: boolean;
  /** When this guest was remediated recently (ms epoch), newest last. */
  remediations?: readonly number[];
  /** Fleet-wide actions approved in the last minute (ms epoch). */
  recentActions?: readonly number[];
  dryRun?: boolean;
  /** An operator approved this very action. */
  approved?: boolean;
  /** The second half of one remediation (start after a stop): not a new remediation. */
  continuation?: boolean;
}

export interface GateResult {
  verdict: Verdict;
  reasons: string[];
  /** For 'hold' verdicts that pass with time (cooldown, budget, busy): when to ask again. */
  retryAt?: number;
  /** The hold is a flap hold-down: open a "flapping" incident and stop acting on the guest. */
  flapping?: boolean;
  /** Which rule held it: repeated holds by the same rule are one decision. */
  rule?: 'hold-down' | 'busy' | 'cooldown' | 'budget';
}

const NEVER = /destroy|delete|remove|purge|config|resize|format|wipe/i;
/** Proposers whose actions are deliberate: no cooldown or flap counting for them. */
const DELIBERATE: readonly Proposer[] = ['operator', 'workflow', 'chaos'];
/** Proposers acting on their own judgement of an incident. */
const AUTOMATED: readonly Proposer[] = ['runbook', 'llm'];
/** Counted in the global budget but never held by it: bulk operations an operator started on purpose. */
const BUDGET_EXEMPT: readonly Proposer[] = ['operator', 'workflow'];
const BUSY_RETRY_MS = 2000;

const deny = (...reasons: string[]): GateResult => ({ verdict: 'deny', reasons });

export function gate(p: Proposal, f: GateFacts, policies: Policies): GateResult {
  const verbOk = ActionVerb.safeParse(p.verb);
  if (!verbOk.success) {
    return deny(NEVER.test(p.verb) ? `"${p.verb.slice(0, 40)}" is never allowed: homeostat does not destroy, delete or change config` : `unknown verb "${p.verb.slice(0, 40)}"`);
  }
  const verb = verbOk.data;
  if (!policies.allowedVerbs.includes(verb)) return deny(`${verb} is not in the fleet's allowed verbs (${policies.allowedVerbs.join(', ')})`);
  if (p.vmid === undefined || !f.guest || f.guest.vmid !== p.vmid) return deny(`target ${p.vmid ?? '(none)'} is not a guest of this fleet`);
  const g = f.guest;

  const automated = AUTOMATED.includes(p.proposer);
  if (verb === 'stop' && p.proposer !== 'chaos') {
    if (!f.hung) return deny('stop (hard power-off) only for a hung guest after a failed shutdown or reboot');
    if (automated && p.vmid !== f.rootCause) return deny(`stop only for the incident's hung root-cause guest${f.rootCause !== undefined ? ` (${f.rootCause})` : ''}, never a bystander`);
  }
  if (verb === 'migrate') {
    if (p.proposer !== 'workflow' || !f.failover) return deny('migrate only inside a failover');
    if (!f.failover.fenced) return deny(`migrate only when the source node ${f.failover.sourceNode} is fenced`);
    if (f.failover.sourceNode !== g.node) return deny(`migrate only moves guests off the failed node ${f.failover.sourceNode}`);
    if (!p.targetNode || p.targetNode === g.node) return deny('migrate needs a target node other than the source');
  }
  if (verb === 'rollback' && (p.proposer !== 'chaos' || !f.chaosRollback)) return deny("snapshot rollback only as a chaos experiment's own rollback");

  // a workflow's guests are listed as symptoms (a node down) and in its own maintenance: that is the point
  const byWorkflow = (p.proposer === 'workflow' || p.proposer === 'chaos') && p.workflowId !== undefined;
  const own = byWorkflow && f.desired?.by === `workflow:${p.workflowId}`;
  if (f.isSymptom && !byWorkflow) return deny('the guest is a symptom of another root cause: remediate the root cause, not its symptoms');
  if (f.desired?.maintenance && !own) return deny('the guest is in maintenance');
  if (f.desired?.state === 'stopped' && verb !== 'shutdown' && verb !== 'stop' && !own) return deny('the desired state of the guest is stopped');

  const reasons: string[] = [];
  if (f.held) return { verdict: 'hold', rule: 'hold-down', reasons: ['flap hold-down in place: an operator must clear it (`fleet.cmd.hold.clear`)'] };
  if (f.busy) return { verdict: 'hold', rule: 'busy', reasons: ['another action on this guest is pending or running (one action per guest)'], retryAt: f.now + BUSY_RETRY_MS };

  if (!DELIBERATE.includes(p.proposer) && !f.continuation) {
    const windowStart = f.now - policies.flap.windowMs;
    const recent = (f.remediations ?? []).filter((t) => t > windowStart);
    if (recent.length >= policies.flap.maxRemediations) {
      return {
        verdict: 'hold',
        rule: 'hold-down',
        flapping: true,
        reasons: [`flapping: ${recent.length} remediations in ${Math.round(policies.flap.windowMs / 1000)} s (limit ${policies.flap.maxRemediations}); holding until an operator clears it`],
      };
    }
    const last = recent.length ? Math.max(...recent) : undefined;
    if (last !== undefined && f.now - last < policies.cooldownMs) {
      return { verdict: 'hold', rule: 'cooldown', reasons: [`cooldown: last remediation ${Math.round((f.now - last) / 1000)} s ago (cooldown ${Math.round(policies.cooldownMs / 1000)} s)`], retryAt: last + policies.cooldownMs };
    }
  }
  const minuteAgo = f.now - 60_000;
  const used = (f.recentActions ?? []).filter((t) => t > minuteAgo);
  if (used.length >= policies.budgetPerMinute && !BUDGET_EXEMPT.includes(p.proposer)) {
    return { verdict: 'hold', rule: 'budget', reasons: [`global budget: ${used.length} actions in the last minute (limit ${policies.budgetPerMinute})`], retryAt: Math.min(...used) + 60_000 };
  }

  let verdict: Verdict = 'allow';
  if (!f.approved) {
    if (g.protected && protectedNeedsApproval(p.proposer, verb, f)) reasons.push(`guest ${g.vmid} is protected: an operator must approve`);
    if (p.proposer === 'llm' && !p.inRunbook) reasons.push(`the LLM proposed ${verb}, which is outside the runbook table: an operator must approve`);
    if (p.proposer === 'llm' && p.vmid !== f.rootCause) reasons.push(`the LLM aimed ${verb} at ${g.vmid}, not at the incident's root cause${f.rootCause !== undefined ? ` ${f.rootCause}` : ''}: an operator must approve`);
    if (reasons.length) verdict = 'needs-approval';
  } else {
    reasons.push('approved by an operator');
  }
  if (f.dryRun) return { verdict: 'dry-run', reasons: [...reasons, `dry-run: would be ${verdict}; nothing executed`] };
  if (verdict === 'allow' && !reasons.length) reasons.push(`${verb} allowed for ${p.proposer}`);
  return { verdict, reasons };
}

/** A workflow an operator started carries that operator's intent (a boot of the fleet includes its
 *  protected guests); an automatic one does not. A chaos experiment never decides alone to harm a
 *  protected guest, whatever its file says; bringing one back up (its rollback) is no harm. */
function protectedNeedsApproval(proposer: Proposer, verb: ActionVerb, f: GateFacts): boolean {
  if (proposer === 'workflow') return f.workflow?.automatic !== false;
  if (proposer === 'chaos') return verb !== 'start';
  return true;
}

export interface FenceFacts {
  dryRun?: boolean;
  /** The node as sensing last saw it. */
  node?: { reachable: boolean; status: string };
  /** The failover workflow asking exists and is a failover of this node. */
  failoverOf?: string;
}

/** Fencing a node (the step before guests are recovered elsewhere) is a proposal too. */
export function gateFence(node: string, f: FenceFacts): GateResult {
  if (f.failoverOf !== node) return deny(`only a failover workflow of ${node} may fence it`);
  if (f.node && f.node.reachable && f.node.status === 'online') return deny(`${node} is online and reachable: never fence a live node`);
  if (f.dryRun) return { verdict: 'dry-run', reasons: [`dry-run: would fence ${node} and recover its guests elsewhere; nothing executed`] };
  return { verdict: 'allow', reasons: [`fence ${node}: confirmed gone`] };
}
