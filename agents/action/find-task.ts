// A call that changes state got no answer (HOMEOSTAT_ERR_PVE_UNCERTAIN), or the agent died between
// the call and storing its UPID: did PVE start a task for it? The guest's task list says. A read
// sent after the call was given up (plus a grace) that still shows no new task means PVE never
// ran it; until then the call may still be queued on a slow PVE, so the agent keeps looking
// instead of calling again.
import { HomeostatError, sleep } from '../../core/mod.ts';
import type { Action } from '../../bus/mod.ts';
import type { GuestAddress, PveApi } from '../../fleet/pve-types.ts';

/** PVE's clock and ours may differ a little (NTP): look this far before the call. */
const CLOCK_SLACK_SEC = 2;

/** The task type PVE gives the call for `a` on guest `g` (as in its UPID). */
export function taskTypeOf(a: Action, g: GuestAddress): string {
  if (a.verb === 'migrate') return g.type === 'lxc' ? 'vzmigrate' : 'qmigrate';
  return `${g.type === 'lxc' ? 'vz' : 'qm'}${a.verb}`;
}

export interface FindTaskOptions {
  /** When the call was sent (ms). */
  calledAt: number;
  /** A read sent at or after this time (ms) that finds no new task settles it: not started. */
  settledAt: number;
  /** UPIDs of earlier attempts of this action: not the one we look for. */
  known: readonly string[];
  /** Give up looking (HOMEOSTAT_ERR_PVE_UNCERTAIN) after this time (ms). */
  deadline: number;
  signal: AbortSignal;
}

/** The UPID of the task the call started, or undefined when it started none. */
export async function findStartedTask(pve: PveApi, a: Action, g: GuestAddress, o: FindTaskOptions): Promise<string | undefined> {
  const filter = { vmid: g.vmid, typefilter: taskTypeOf(a, g), since: Math.floor(o.calledAt / 1000) - CLOCK_SLACK_SEC, source: 'all' as const, limit: 50 };
  let why = 'no answer yet';
  for (;;) {
    o.signal.throwIfAborted();
    const sentAt = Date.now();
    try {
      const hit = (await pve.listTasks(g.node, filter)).find((t) => !o.known.includes(t.upid));
      if (hit) return hit.upid;
      if (sentAt >= o.settledAt) return undefined;
      why = 'no task yet';
    } catch (e) {
      o.signal.throwIfAborted();
      why = (e as Error).message;
    }
    if (Date.now() > o.deadline) {
      throw new HomeostatError('HOMEOSTAT_ERR_PVE_UNCERTAIN', `${a.verb} of guest ${g.vmid} got no answer and its task list could not be read (${why.slice(0, 300)}); not calling again blindly`);
    }
    await sleep(Math.max(100, Math.min(1000, o.settledAt - Date.now())), o.signal);
  }
}
