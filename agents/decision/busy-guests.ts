// One action per guest: which guests have an action pending approval, queued or running (ours or
// a workflow's), and which case each of our in-flight actions belongs to.
import type { Policies } from '../../fleet/manifest.ts';
import { IN_FLIGHT } from './runbook.ts';
import type { CaseRecord } from './store.ts';

export class BusyGuests {
  private readonly busy = new Map<number, { actionId: string; since: number }>();
  /** Our in-flight actions → their case. */
  private readonly cases = new Map<string, string>();
  /** A busy mark whose outcome never came (no action agent running) stops counting after this. */
  private readonly staleMs: number;

  constructor(p: Policies) {
    this.staleMs = p.approvalTimeoutMs + 2 * p.guestBootTimeoutMs + p.shutdownTimeoutSec * 1000 + 60_000;
  }

  /** `vmid` is busy with `actionId`; with `caseId`, the action is ours and belongs to that case. */
  mark(vmid: number, actionId: string, caseId?: string): void {
    this.busy.set(vmid, { actionId, since: Date.now() });
    if (caseId !== undefined) this.cases.set(actionId, caseId);
  }

  /** The action ended (or will not run): the guest is free again. */
  forget(vmid: number, actionId: string): void {
    if (this.busy.get(vmid)?.actionId === actionId) this.busy.delete(vmid);
    this.cases.delete(actionId);
  }

  /** The action this guest is busy with (pending approval, queued or running), if any. */
  busyWith(vmid: number): string | undefined {
    const b = this.busy.get(vmid);
    return b && Date.now() - b.since < this.staleMs ? b.actionId : undefined;
  }

  isBusy(vmid: number, now: number): boolean {
    const b = this.busy.get(vmid);
    return b !== undefined && now - b.since < this.staleMs;
  }

  caseOf(actionId: string): string | undefined {
    return this.cases.get(actionId);
  }

  /** A case loaded from KV: its in-flight steps keep their guests busy. */
  index(c: CaseRecord): void {
    for (const s of c.steps) if (IN_FLIGHT.includes(s.status)) this.mark(s.vmid, s.actionId, c.caseId);
  }
}
