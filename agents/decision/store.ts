// What the decision agent remembers across restarts, in the fleet-state bucket:
//   case.<caseId>         the incident (or operator request) and the steps taken for it
//   remediations.<vmid>   when the guest was remediated (cooldown and flap window)
//   hold.<vmid>           a flap hold-down, until an operator clears it
//   approval.<actionId>   an action waiting for an operator (times out to denied)
//   budget                when actions were approved in the last minute, every proposer (global budget)
//   fence.<node>          the decision agent allowed a failover workflow to fence this node
import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { Action, Incident, kvCas, kvGet, kvList, kvPut, token, type Versioned } from '../../bus/mod.ts';

const StepSchema = z.object({
  actionId: z.string(),
  vmid: z.number().int(),
  verb: Action.shape.verb,
  attempt: z.number().int(),
  status: z.enum(['requested', 'approved', 'started', 'succeeded', 'failed', 'denied', 'dry-run']),
  proposer: Action.shape.proposer,
  at: z.number(),
  doneAt: z.number().optional(),
  errorCode: z.string().optional(),
  published: z.boolean().optional(),
});

export const CaseRecord = z.object({
  caseId: z.string(),
  incident: Incident.optional(),
  correlationId: z.string(),
  /** The envelope that last moved this case (incident event, command). */
  causationId: z.string().optional(),
  steps: z.array(StepSchema).default([]),
  /** Key of the last decision published, so a repeated update does not repeat it. */
  lastDecision: z.string().optional(),
  failoverRequested: z.boolean().optional(),
  openedAt: z.number(),
  updatedAt: z.number(),
});
export type CaseRecord = z.infer<typeof CaseRecord>;

export const Remediations = z.object({ times: z.array(z.number()).default([]) });
export type Remediations = z.infer<typeof Remediations>;

export const HoldRecord = z.object({
  vmid: z.number().int(),
  since: z.string(),
  incidentId: z.string(),
  reason: z.string(),
});
export type HoldRecord = z.infer<typeof HoldRecord>;

export const ApprovalRecord = z.object({
  action: Action,
  caseId: z.string(),
  correlationId: z.string(),
  causationId: z.string().optional(),
  requestedAt: z.string(),
  expiresAt: z.number(),
  /** Facts the gate saw, judged again at approval time. */
  hung: z.boolean().default(false),
  continuation: z.boolean().default(false),
  inRunbook: z.boolean().default(true),
});
export type ApprovalRecord = z.infer<typeof ApprovalRecord>;

export const FenceRecord = z.object({ node: z.string(), workflowId: z.string(), at: z.string() });
export type FenceRecord = z.infer<typeof FenceRecord>;

export const stateKeys = {
  budget: () => 'budget',
  fence: (node: string) => `fence.${token(node)}`,
  case: (caseId: string) => `case.${token(caseId)}`,
  remediations: (vmid: number) => `remediations.${vmid}`,
  hold: (vmid: number) => `hold.${vmid}`,
  approval: (actionId: string) => `approval.${token(actionId)}`,
} as const;

/** Typed access to the decision agent's keys; `kv` is the fleet-state bucket. */
export class DecisionStore {
  constructor(private readonly kv: KV) {}

  getCase(caseId: string): Promise<Versioned<CaseRecord> | undefined> {
    return kvGet(this.kv, stateKeys.case(caseId), CaseRecord);
  }
  async putCase(c: CaseRecord): Promise<void> {
    c.updatedAt = Date.now();
    await kvPut(this.kv, stateKeys.case(c.caseId), c);
  }
  async deleteCase(caseId: string): Promise<void> {
    await this.kv.delete(stateKeys.case(caseId));
  }
  async cases(): Promise<CaseRecord[]> {
    return [...(await kvList(this.kv, 'case.', CaseRecord)).values()];
  }

  async remediations(vmid: number): Promise<number[]> {
    return (await kvGet(this.kv, stateKeys.remediations(vmid), Remediations))?.value.times ?? [];
  }
  /** Remember a remediation; history older than `keepMs` is dropped. */
  async addRemediation(vmid: number, at: number, keepMs: number): Promise<void> {
    const times = (await this.remediations(vmid)).filter((t) => t > at - keepMs);
    await kvPut(this.kv, stateKeys.remediations(vmid), { times: [...times, at] });
  }
  async clearRemediations(vmid: number): Promise<void> {
    await this.kv.delete(stateKeys.remediations(vmid));
  }

  /** Approvals (of every proposer) in the last minute: the global budget, shared by every decision
   *  agent and kept across restarts. */
  async recentActions(now: number): Promise<number[]> {
    const times = (await kvGet(this.kv, stateKeys.budget(), Remediations))?.value.times ?? [];
    return times.filter((t) => t > now - 60_000);
  }
  /** Count one approved action (compare-and-set, so concurrent decisions never lose a count).
   *  Counts made while a write is in flight are batched into the next one: a workflow asking for
   *  64 steps at once makes a handful of writes to the one budget key, not 64 colliding ones. */
  countAction(at: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.counting.push({ at, resolve, reject });
      if (!this.flushing) this.flushing = this.flushCounts();
    });
  }
  private counting: { at: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  private flushing: Promise<void> | undefined;
  private async flushCounts(): Promise<void> {
    while (this.counting.length) {
      const batch = this.counting.splice(0);
      try {
        await this.writeCounts(batch.map((b) => b.at));
        for (const b of batch) b.resolve();
      } catch (e) {
        for (const b of batch) b.reject(e as Error);
      }
    }
    this.flushing = undefined;
  }
  private async writeCounts(ats: number[]): Promise<void> {
    const newest = Math.max(...ats);
    for (let i = 0; i < 20; i++) {
      const cur = await kvGet(this.kv, stateKeys.budget(), Remediations);
      const times = [...(cur?.value.times ?? []), ...ats].filter((t) => t > newest - 60_000).sort((a, b) => a - b);
      if ((await kvCas(this.kv, stateKeys.budget(), { times }, cur?.revision ?? 0)) !== undefined) return;
    }
    throw new Error('budget: too many concurrent updates');
  }

  async fence(node: string): Promise<FenceRecord | undefined> {
    return (await kvGet(this.kv, stateKeys.fence(node), FenceRecord))?.value;
  }
  async putFence(f: FenceRecord): Promise<void> {
    await kvPut(this.kv, stateKeys.fence(f.node), f);
  }

  async hold(vmid: number): Promise<HoldRecord | undefined> {
    return (await kvGet(this.kv, stateKeys.hold(vmid), HoldRecord))?.value;
  }
  /** Create the hold-down; false when one is already there. */
  async setHold(h: HoldRecord): Promise<boolean> {
    try {
      await this.kv.create(stateKeys.hold(h.vmid), new TextEncoder().encode(JSON.stringify(h)));
      return true;
    } catch {
      return false;
    }
  }
  async clearHold(vmid: number): Promise<void> {
    await this.kv.delete(stateKeys.hold(vmid));
  }
  async holds(): Promise<HoldRecord[]> {
    return [...(await kvList(this.kv, 'hold.', HoldRecord)).values()];
  }

  async putApproval(a: ApprovalRecord): Promise<void> {
    await kvPut(this.kv, stateKeys.approval(a.action.actionId), a);
  }
  /** The pending approval of one action: a get, not a listing (asked on every workflow proposal). */
  async approval(actionId: string): Promise<ApprovalRecord | undefined> {
    return (await kvGet(this.kv, stateKeys.approval(actionId), ApprovalRecord))?.value;
  }
  async approvals(): Promise<ApprovalRecord[]> {
    return [...(await kvList(this.kv, 'approval.', ApprovalRecord)).values()];
  }
  /** Take a pending approval exactly once (approve, deny and the timeout race for it). */
  async claimApproval(actionId: string): Promise<ApprovalRecord | undefined> {
    const key = stateKeys.approval(actionId);
    const cur = await kvGet(this.kv, key, ApprovalRecord);
    if (!cur) return undefined;
    try {
      await this.kv.delete(key, { previousSeq: cur.revision });
      return cur.value;
    } catch {
      return undefined;
    }
  }
}
