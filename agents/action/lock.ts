// The per-guest action lock in the `locks` bucket (`guest.<vmid>`), and the done markers
// (`done.<actionId>`). Every write is a compare-and-set on the revision. A lock carries the PVE
// task id as soon as PVE returns it, so a successor resumes the task instead of starting another.
import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { LockRecord, kvCas, kvGet, kvKeys, kvList, kvPut, token, type Action } from '../../bus/mod.ts';

/** LockRecord (what others read: actionId, holder, expiresAt) plus what a successor needs to resume. */
export const ActionLock = LockRecord.extend({
  vmid: z.number().int(),
  verb: z.string(),
  phase: z.enum(['acquired', 'calling', 'task', 'verifying']),
  attempt: z.number().int().min(0),
  upid: z.string().optional(),
  /** When the state-changing call was sent (ms): where to look in the task list after a doubt. */
  calledAt: z.number().optional(),
  /** UPIDs of earlier attempts of this action (a retry after a failed task). */
  pastUpids: z.array(z.string()).optional(),
  /** Id of the ActionStarted envelope, the causation of the outcome. */
  startedEnvId: z.string().optional(),
  since: z.number(),
});
export type ActionLock = z.infer<typeof ActionLock>;

export const ActionDone = z.object({
  actionId: z.string(),
  outcome: z.enum(['succeeded', 'failed']),
  at: z.string(),
  upid: z.string().optional(),
  verified: z.boolean().optional(),
  error: z.object({ code: z.string(), message: z.string() }).optional(),
  /** The envelope that carried it: the same action in another message is a replay. */
  envId: z.string().optional(),
});
export type ActionDone = z.infer<typeof ActionDone>;

export const doneKey = (actionId: string) => `done.${token(actionId)}`;

/** Someone else changed the lock under us (our lease expired and another action took it). */
export class LockLost extends Error {
  constructor(vmid: number) {
    super(`lost the action lock of guest ${vmid}`);
    this.name = 'LockLost';
  }
}

export type Acquired = { kind: 'acquired' | 'resumed'; lock: HeldLock } | { kind: 'busy'; by: ActionLock };

/** A lock we hold: writes are serialized, each a CAS on the last revision we wrote. */
export class HeldLock {
  private chain: Promise<unknown> = Promise.resolve();
  constructor(private readonly kv: KV, public value: ActionLock, private revision: number, private readonly leaseMs: number) {}

  update(patch: Partial<ActionLock>): Promise<void> {
    const run = this.chain.then(async () => {
      const next = ActionLock.parse({ ...this.value, ...patch, expiresAt: Date.now() + this.leaseMs });
      const rev = await kvCas(this.kv, kvKeys.lock(next.vmid), next, this.revision);
      if (rev === undefined) throw new LockLost(next.vmid);
      this.value = next;
      this.revision = rev;
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Keep the lock but let a successor resume at once (a clean stop mid-task). */
  async yieldForResume(): Promise<void> {
    await this.chain;
    const next = { ...this.value, expiresAt: 0 };
    const rev = await kvCas(this.kv, kvKeys.lock(next.vmid), next, this.revision);
    if (rev !== undefined) this.revision = rev;
  }

  async release(): Promise<void> {
    await this.chain;
    await this.kv.delete(kvKeys.lock(this.value.vmid), { previousSeq: this.revision }).catch(() => undefined);
  }
}

export class GuestLocks {
  constructor(private readonly kv: KV, private readonly holder: string, readonly leaseMs: number) {}

  /** Take the guest's lock for this action, or resume it when it is this action's own lock
   *  and its holder is gone (expired or yielded). */
  async acquire(a: Action): Promise<Acquired> {
    const key = kvKeys.lock(a.target.vmid);
    // most guests are not locked: create first (one round trip); a lock there (live, expired, or
    // this action's own to resume) makes the create fail, and is then read and judged below
    const fresh = (now: number): ActionLock => ({ actionId: a.actionId, holder: this.holder, expiresAt: now + this.leaseMs, vmid: a.target.vmid, verb: a.verb, phase: 'acquired', attempt: 0, since: now });
    const first = fresh(Date.now());
    const created = await kvCas(this.kv, key, first, 0);
    if (created !== undefined) return { kind: 'acquired', lock: new HeldLock(this.kv, first, created, this.leaseMs) };
    const cur = await kvGet(this.kv, key, ActionLock);
    const now = Date.now();
    if (cur && cur.value.expiresAt > now && cur.value.holder !== this.holder) return { kind: 'busy', by: cur.value };
    if (cur && cur.value.actionId !== a.actionId && cur.value.expiresAt > now) return { kind: 'busy', by: cur.value };
    const resumed = cur?.value.actionId === a.actionId;
    const value: ActionLock = resumed
      ? { ...cur!.value, holder: this.holder, expiresAt: now + this.leaseMs }
      : fresh(now);
    let rev: number | undefined;
    if (cur) rev = await kvCas(this.kv, key, value, cur.revision);
    else {
      // a deleted key has no value but a revision: create() handles both
      rev = await kvCas(this.kv, key, value, 0);
    }
    if (rev === undefined) {
      const now2 = await kvGet(this.kv, key, ActionLock);
      return now2 ? { kind: 'busy', by: now2.value } : this.acquire(a);
    }
    return { kind: resumed ? 'resumed' : 'acquired', lock: new HeldLock(this.kv, value, rev, this.leaseMs) };
  }

  /** The lock is held for this very action (it started, and may be resumed). */
  async heldFor(a: Action): Promise<boolean> {
    return (await kvGet(this.kv, kvKeys.lock(a.target.vmid), ActionLock))?.value.actionId === a.actionId;
  }

  async done(actionId: string): Promise<ActionDone | undefined> {
    return (await kvGet(this.kv, doneKey(actionId), ActionDone))?.value;
  }

  /** Written once: a marker already there (another agent's) is kept, never overwritten. */
  async markDone(d: ActionDone): Promise<void> {
    if ((await kvCas(this.kv, doneKey(d.actionId), d, 0)) !== undefined) return;
    if (!(await this.done(d.actionId))) throw new Error(`could not write the done marker of action ${d.actionId}`);
  }

  /** Forget done markers older than `maxAgeMs` (JetStream dedup covers the first 10 minutes;
   *  the markers cover redeliveries and replays after that). */
  async pruneDone(maxAgeMs: number): Promise<number> {
    const all = await kvList(this.kv, 'done.', ActionDone);
    const cutoff = Date.now() - maxAgeMs;
    let n = 0;
    for (const [k, d] of all) {
      if (Date.parse(d.at) < cutoff) {
        await this.kv.delete(k).catch(() => undefined);
        n++;
      }
    }
    return n;
  }
}
