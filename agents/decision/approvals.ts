// Pending approvals: kept in KV so they survive a restart of the decision agent, each with a
// deadline after which it counts as denied. Approve, deny and the timeout race for the KV entry,
// so exactly one of them decides.
import { HomeostatError, type Logger } from '../../core/mod.ts';
import { subjects, type Action, type Bus } from '../../bus/mod.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { GateResult } from './policy.ts';
import type { ApprovalRecord, DecisionStore } from './store.ts';

export interface ApprovalHandlers {
  /** Judge the approved action again and dispatch it when the gate allows. */
  approved(rec: ApprovalRecord, by: string, at: string, key?: string): Promise<GateResult>;
  /** The action will not run (denied by an operator, by the gate, or timed out). */
  denied(rec: ApprovalRecord, by: string, reason: string): Promise<void>;
}

export interface PendingView {
  actionId: string;
  verb: string;
  target: Action['target'];
  proposer: string;
  rationale?: string;
  incidentId?: string;
  requestedAt: string;
  expiresAt: string;
}

export const TIMEOUT_BY = 'policy:approval-timeout';

export class Approvals {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private stopped = false;

  constructor(
    private readonly bus: Bus,
    private readonly store: DecisionStore,
    private readonly log: Logger,
    private readonly metrics: Metrics | undefined,
    private readonly handlers: ApprovalHandlers,
  ) {}

  /** Pending approvals are the armed deadlines. */
  private counted(): void {
    this.metrics?.approvalsPending.set(this.timers.size);
  }

  /** Re-arm the deadlines of approvals that were pending when the agent last stopped. */
  async start(): Promise<ApprovalRecord[]> {
    const pending = await this.store.approvals();
    for (const a of pending) this.arm(a);
    return pending;
  }

  async request(rec: ApprovalRecord): Promise<void> {
    await this.store.putApproval(rec);
    await this.bus.publish(subjects.action('requested'), 'ActionRequested', rec.action, {
      correlationId: rec.correlationId,
      causationId: rec.causationId,
      msgId: `${rec.action.actionId}.requested`,
    });
    this.arm(rec);
  }

  async list(): Promise<PendingView[]> {
    const all = await this.store.approvals();
    return all
      .sort((a, b) => a.requestedAt.localeCompare(b.requestedAt))
      .map((r) => ({
        actionId: r.action.actionId,
        verb: r.action.verb,
        target: r.action.target,
        proposer: r.action.proposer,
        rationale: r.action.rationale,
        incidentId: r.action.incidentId,
        requestedAt: r.requestedAt,
        expiresAt: new Date(r.expiresAt).toISOString(),
      }));
  }

  async pendingFor(vmid: number): Promise<boolean> {
    return (await this.store.approvals()).some((a) => a.action.target.vmid === vmid);
  }

  /** `key`: the operator key that signed the approval (recorded on the action). A gate that
   *  refuses the action at approval time makes this throw: the approval did not happen. */
  async approve(actionId: string, by: string, key?: string): Promise<{ actionId: string; verdict: string; reasons: string[] }> {
    const rec = await this.claim(actionId);
    const at = new Date().toISOString();
    let r;
    try {
      r = await this.handlers.approved(rec, by, at, key);
    } catch (e) {
      await this.restore(rec);
      throw e;
    }
    if (r.verdict === 'hold') {
      // the approval stands; the gate wants time (cooldown, budget, a running action): keep it pending
      await this.store.putApproval(rec);
      this.arm(rec);
      throw new HomeostatError('HOMEOSTAT_ERR_POLICY_DENIED', `approved, but on hold: ${r.reasons.join('; ')}; approve again later`);
    }
    if (r.verdict === 'deny') {
      const why = `the policy gate refused it at approval time: ${r.reasons.join('; ')}`;
      await this.publishDenied(rec, by, why, false, true, key);
      throw new HomeostatError('HOMEOSTAT_ERR_POLICY_DENIED', `not approved: ${why}`);
    }
    return { actionId, verdict: r.verdict, reasons: r.reasons };
  }

  async deny(actionId: string, by: string, reason = 'denied by an operator', key?: string): Promise<{ actionId: string; verdict: 'deny' }> {
    const rec = await this.claim(actionId);
    try {
      await this.publishDenied(rec, by, reason, true, true, key);
    } catch (e) {
      await this.restore(rec);
      throw e;
    }
    return { actionId, verdict: 'deny' };
  }

  /** `inform`: tell the handlers (false when the caller already holds the case and cleans up itself). */
  async publishDenied(rec: ApprovalRecord, by: string, reason: string, byOperator: boolean, inform = true, key?: string): Promise<void> {
    const action: Action = { ...rec.action, approval: { by, at: new Date().toISOString(), approved: false, reason: reason.slice(0, 2000), ...(key ? { key } : {}) } };
    await this.bus.publish(subjects.action('denied'), 'ActionDenied', action, {
      correlationId: rec.correlationId,
      causationId: rec.causationId,
      msgId: `${rec.action.actionId}.denied`,
    });
    this.log.info({ actionId: rec.action.actionId, by, reason, byOperator }, 'action denied');
    if (inform) await this.handlers.denied(rec, by, reason);
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  private async claim(actionId: string): Promise<ApprovalRecord> {
    const rec = await this.store.claimApproval(actionId);
    if (!rec) throw new HomeostatError('HOMEOSTAT_ERR_NOT_FOUND', `no pending approval ${JSON.stringify(actionId)} (already decided, timed out, or unknown)`);
    const t = this.timers.get(actionId);
    if (t) clearTimeout(t);
    this.timers.delete(actionId);
    this.counted();
    return rec;
  }

  /** Put a claimed approval back when deciding it failed half-way (NATS down): nothing is lost. */
  private async restore(rec: ApprovalRecord, retryInMs = 0): Promise<void> {
    await this.store.putApproval(rec).catch((e: unknown) => this.log.error({ actionId: rec.action.actionId, err: (e as Error).message }, 'could not restore pending approval'));
    this.arm(retryInMs ? { ...rec, expiresAt: Math.max(rec.expiresAt, Date.now() + retryInMs) } : rec);
  }

  private arm(rec: ApprovalRecord): void {
    if (this.stopped) return;
    const id = rec.action.actionId;
    const old = this.timers.get(id);
    if (old) clearTimeout(old);
    const t = setTimeout(() => void this.expire(rec), Math.max(0, rec.expiresAt - Date.now()));
    this.timers.set(id, t);
    this.counted();
  }

  private async expire(rec: ApprovalRecord): Promise<void> {
    this.timers.delete(rec.action.actionId);
    this.counted();
    if (this.stopped) return;
    let claimed: ApprovalRecord | undefined;
    try {
      claimed = await this.store.claimApproval(rec.action.actionId);
      if (!claimed) return;
      const secs = Math.round((claimed.expiresAt - Date.parse(claimed.requestedAt)) / 1000);
      await this.publishDenied(claimed, TIMEOUT_BY, `no operator approval within ${secs} s: denied`, false);
    } catch (e) {
      this.log.error({ actionId: rec.action.actionId, err: (e as Error).message }, 'approval timeout failed; retrying');
      if (claimed) await this.restore(claimed, 1000);
    }
  }
}
