// homeostat's own actions are not failures. A guest that an action of ours (operator, chat,
// workflow, or a remediation aimed at a guest without an incident of its own) is rebooting,
// starting, stopping or migrating looks stopped or unhealthy for a while; that change is matched to
// the action in flight and opens no incident. The excuse ends when the guest is settled again, or
// a grace after the action ended; then the guest is judged as usual ("still stopped after the
// reboot" is a real failure). Dependents failing health checks while a dependency is ours to
// restart are excused the same way.
import type { Action, ActionPhase, ActionVerb } from '../../bus/mod.ts';
import type { Failure } from './model.ts';

export interface OwnAction {
  actionId: string;
  verb: ActionVerb;
  by: string;
  /** When the action ended (succeeded/failed/denied); undefined while in flight. */
  endedAt?: number;
}

export interface OwnActionGrace {
  /** After the action ended, how long a stopped guest is still put down to it. */
  stoppedMs: number;
  /** After the action ended, how long a guest (or a dependent) failing health checks is. */
  unhealthyMs: number;
}

const ENDS = new Set<ActionPhase>(['succeeded', 'failed', 'denied']);

export class OwnActions {
  private readonly byVmid = new Map<number, OwnAction>();

  constructor(private readonly grace: OwnActionGrace) {}

  /** Record an action lifecycle message; returns the vmid it concerns when the state changed. */
  onAction(phase: ActionPhase, a: Action, now: number): number | undefined {
    const vmid = a.target.vmid;
    if (phase === 'approved' || phase === 'started') {
      const cur = this.byVmid.get(vmid);
      if (cur?.actionId === a.actionId && cur.endedAt === undefined) return undefined;
      if (cur?.actionId === a.actionId && phase === 'started') return undefined; // a late copy of an ended one
      this.byVmid.set(vmid, { actionId: a.actionId, verb: a.verb, by: describe(a) });
      return vmid;
    }
    if (ENDS.has(phase)) {
      const cur = this.byVmid.get(vmid);
      if (!cur || cur.actionId !== a.actionId || cur.endedAt !== undefined) return undefined;
      cur.endedAt = now;
      return vmid;
    }
    return undefined;
  }

  /** The own action that explains `failure` of `vmid` now, if any. */
  /** `ancestors` is asked for only when it matters (a crash burst asks thousands of times, with no
   *  action of ours in flight). */
  excuse(vmid: number, failure: Failure, now: number, ancestors: () => readonly number[]): OwnAction | undefined {
    if (!this.byVmid.size) return undefined;
    const own = this.byVmid.get(vmid);
    if (own && this.covers(own, failure, now)) return own;
    if (failure !== 'unhealthy') return undefined;
    for (const a of ancestors()) {
      const o = this.byVmid.get(a);
      if (o && this.covers(o, 'unhealthy', now)) return o;
    }
    return undefined;
  }

  /** The guest is as desired again: its action is done with it. */
  settled(vmid: number): void {
    const own = this.byVmid.get(vmid);
    if (own?.endedAt !== undefined) this.byVmid.delete(vmid);
  }

  /** Guests whose excuse changed between `since` and `now` (a grace ran out): to be judged again.
   *  An action whose every grace is over is forgotten. */
  due(since: number, now: number): number[] {
    const out: number[] = [];
    for (const [vmid, o] of this.byVmid) {
      if (o.endedAt === undefined) continue;
      const edges = [o.endedAt + this.grace.stoppedMs, o.endedAt + this.grace.unhealthyMs];
      if (edges.some((e) => e <= now && e > since)) out.push(vmid);
      if (edges.every((e) => e <= now)) this.byVmid.delete(vmid);
    }
    return out;
  }

  get size(): number {
    return this.byVmid.size;
  }

  private covers(o: OwnAction, failure: Failure, now: number): boolean {
    if (o.endedAt === undefined) return true;
    return now - o.endedAt < (failure === 'crashed' ? this.grace.stoppedMs : this.grace.unhealthyMs);
  }
}

function describe(a: Action): string {
  const who = a.workflowId ? `workflow ${a.workflowId}` : a.requestedBy;
  return `${a.verb} by ${who} (${a.actionId})`;
}
