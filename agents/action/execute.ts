// Runs one approved action exactly once: done marker → guest lock → (resume the stored UPID, or
// call PVE and store its UPID at once) → wait for the task → verify → outcome → done marker.
// Retryable PVE failures are tried again per policy (guestRetries, backoff), then reported.
import { backoffMs, HomeostatError, isHomeostatError, newId, sleep, type Logger } from '../../core/mod.ts';
import { checkSeal, subjects, type Action, type Bus, type Envelope } from '../../bus/mod.ts';
import type { Policies } from '../../fleet/manifest.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import type { GuestAddress, PveApi } from '../../fleet/pve-types.ts';
import { findStartedTask } from './find-task.ts';
import { LockLost, type GuestLocks, type HeldLock } from './lock.ts';
import { expectedState, type Verifier } from './verify.ts';

export type Outcome = 'ack' | 'retry' | 'interrupted';

export interface Job {
  signal: AbortSignal;
  /** The action only waits for its guest now: let the agent start the next one (see consumer.ts). */
  givePlace?: () => boolean;
}

/** Worth another attempt: PVE was unreachable or slow, or its task failed. (Not PVE_UNCERTAIN:
 *  a call that may have run is looked up in the task list, never repeated blindly.) */
const RETRYABLE = new Set(['HOMEOSTAT_ERR_PVE_UNAVAILABLE', 'HOMEOSTAT_ERR_PVE_TIMEOUT', 'HOMEOSTAT_ERR_PVE_TASK_FAILED']);

export interface ExecutorDeps {
  bus: Bus;
  pve: PveApi;
  fleet: Fleet;
  locks: GuestLocks;
  verifier: Verifier;
  log: Logger;
  /** First retry backoff (doubles per attempt, jittered). */
  retryBaseMs: number;
  /** Public keys of the decision agent(s): only actions sealed by one of them run. */
  trusted: ReadonlySet<string>;
  /** The PVE client's timeout of one call: a call unanswered after it may still be running. */
  pveTimeoutMs: number;
}

/** After a call was given up, PVE gets this long more before a task list without it settles it. */
const SETTLE_GRACE_MS = 2000;

export class Executor {
  private readonly policies: Policies;
  constructor(private readonly d: ExecutorDeps) {
    this.policies = d.fleet.policies;
  }

  private taskTimeoutMs(a: Action): number {
    const graceSec = a.params.timeoutSec ?? this.policies.shutdownTimeoutSec;
    return Math.max(2 * this.policies.guestBootTimeoutMs, graceSec * 1000 + 30_000, a.verb === 'migrate' ? 600_000 : 0);
  }

  async run(env: Envelope<Action>, job: Job): Promise<Outcome> {
    const a = env.data;
    const log = this.d.log.child({ actionId: a.actionId, verb: a.verb, vmid: a.target.vmid });
    const seal = checkSeal(a, this.d.trusted);
    if (!seal.ok && seal.reason !== 'expired') return this.reject(env, seal.reason, seal.detail, log);
    const done = await this.d.locks.done(a.actionId);
    if (done) {
      if (done.envId && done.envId !== env.id) return this.reject(env, 'replayed', `action ${a.actionId} already ran (${done.outcome} at ${done.at}); this is another copy of it`, log);
      log.info({ outcome: done.outcome }, 'action already done: acknowledged without calling PVE');
      return 'ack';
    }
    // an expired seal may still finish what it started before a restart, never start anew
    if (!seal.ok && !(await this.d.locks.heldFor(a))) return this.reject(env, seal.reason, seal.detail, log);
    if (a.needsApproval && !a.approval?.approved) {
      await this.finish(env, undefined, { ...a, error: { code: 'HOMEOSTAT_ERR_POLICY_DENIED', message: 'action needs an operator approval and carries none' } }, 'failed');
      return 'ack';
    }
    const deadline = Date.now() + this.taskTimeoutMs(a) + this.d.locks.leaseMs;
    let lock: HeldLock;
    for (;;) {
      const r = await this.d.locks.acquire(a);
      if (r.kind !== 'busy') {
        lock = r.lock;
        if (r.kind === 'resumed') log.info({ phase: lock.value.phase, upid: lock.value.upid }, 'resuming action after a restart');
        break;
      }
      if (job.signal.aborted) return 'interrupted';
      if (Date.now() > deadline) {
        await this.finish(env, undefined, { ...a, error: { code: 'HOMEOSTAT_ERR_LOCKED', message: `guest ${a.target.vmid} stayed locked by action ${r.by.actionId} (${r.by.verb})` } }, 'failed');
        return 'ack';
      }
      await sleep(250, job.signal).catch(() => undefined); // an abort is seen at the top of the loop
    }
    // Another process may have finished this action between the first look and the lock.
    // with it, two reads at once: the action's done marker, and (a fresh start/stop/shutdown)
    // whether the guest is already there, one round trip less before the PVE call
    const fresh = lock.value.phase === 'acquired' && !lock.value.upid && (a.verb === 'start' || a.verb === 'stop' || a.verb === 'shutdown');
    const [doneMeanwhile, firstLook] = await Promise.all([this.d.locks.done(a.actionId), fresh ? this.alreadyThere(a, this.address(a)) : undefined]);
    if (doneMeanwhile) {
      log.info({ outcome: doneMeanwhile.outcome }, 'action done by another agent while this one waited for the lock');
      await lock.release();
      return 'ack';
    }
    const renew = setInterval(() => void lock.update({}).catch(() => undefined), Math.max(200, this.d.locks.leaseMs / 3));
    try {
      return await this.execute(env, lock, job, log, firstLook);
    } finally {
      clearInterval(renew);
    }
  }

  private async execute(env: Envelope<Action>, lock: HeldLock, job: Job, log: Logger, firstLook?: boolean): Promise<Outcome> {
    const a = env.data;
    const g = this.address(a);
    const maxAttempts = 1 + this.policies.guestRetries;
    for (;;) {
      const attempt = lock.value.attempt;
      try {
        let upid = lock.value.upid;
        const t0 = Date.now();
        if (!upid && lock.value.phase !== 'verifying') {
          // a predecessor died between its call and storing the UPID: look before calling again
          if (lock.value.phase === 'calling') upid = await this.findTask(a, g, lock, (lock.value.calledAt ?? lock.value.since) + this.d.pveTimeoutMs + SETTLE_GRACE_MS, job.signal);
          const look = lock.value.phase === 'acquired' ? firstLook : undefined; // (a first attempt's, taken with the done marker)
          firstLook = undefined;
          const there = !upid && (a.verb === 'start' || a.verb === 'stop' || a.verb === 'shutdown') && (look ?? (await this.alreadyThere(a, g)));
          if (there) log.info('guest already in the wanted state: no PVE call');
          else if (!upid) upid = await this.callOnce(a, g, lock, attempt, job.signal, log);
          if (upid) {
            // the UPID in the lock and ActionStarted out together (one round trip, not three): a
            // crash before the lock has it finds the task again (phase 'calling'), and ActionStarted
            // again is the same message (msgId); one before ActionStarted leaves the outcome to say it
            const startedEnvId = newId();
            await Promise.all([
              lock.update({ phase: 'task', upid, startedEnvId }),
              this.d.bus.publish(subjects.action('started'), 'ActionStarted', { ...a, attempt, upid }, {
                id: startedEnvId, correlationId: env.correlationId, causationId: env.id, msgId: `${a.actionId}.started.${attempt}`,
              }),
            ]);
            log.info({ upid, attempt }, 'PVE task started');
          }
        }
        if (upid && lock.value.phase === 'task') {
          await this.d.pve.waitForTask(nodeOfUpid(upid) ?? g.node, upid, { timeoutMs: this.taskTimeoutMs(a), signal: job.signal });
        }
        await lock.update({ phase: 'verifying' });
        // Verifying only waits (for a start: the guest's whole boot) on the verifier's shared look
        // at the fleet: it gives its place to the next approved action and keeps the guest lock
        // until verified. Holding the place capped a 5,000-guest boot at ~50 starts/s (bench/boot.ts).
        job.givePlace?.();
        await this.d.verifier.verify(a, a.verb === 'migrate' && a.params.targetNode ? { ...g, node: a.params.targetNode } : g, t0, this.policies.guestBootTimeoutMs, job.signal);
        await this.finish(env, lock, { ...a, attempt, upid, verified: true }, 'succeeded');
        log.info({ upid, attempt }, 'action succeeded, verified');
        return 'ack';
      } catch (e) {
        if (job.signal.aborted) {
          await lock.yieldForResume().catch(() => undefined);
          return 'interrupted';
        }
        if (e instanceof LockLost) {
          log.warn('lost the guest lock mid-action; will retry');
          return 'retry';
        }
        const err = coded(e);
        const verifying = lock.value.phase === 'verifying';
        if (!verifying && RETRYABLE.has(err.code) && attempt + 1 < maxAttempts) {
          const wait = backoffMs(attempt + 1, { baseMs: this.d.retryBaseMs, maxMs: Math.max(this.d.retryBaseMs, 30_000) });
          log.warn({ attempt, code: err.code, err: err.message, retryInMs: wait }, 'action attempt failed; retrying');
          const pastUpids = [...(lock.value.pastUpids ?? []), ...(lock.value.upid ? [lock.value.upid] : [])];
          await lock.update({ attempt: attempt + 1, phase: 'acquired', upid: undefined, startedEnvId: undefined, pastUpids });
          await sleep(wait, job.signal).catch(() => undefined);
          continue;
        }
        log.warn({ attempt, code: err.code, err: err.message }, 'action failed');
        await this.finish(env, lock, { ...a, attempt, upid: lock.value.upid, error: { code: err.code, message: err.message.slice(0, 2000) } }, 'failed');
        return 'ack';
      }
    }
  }

  /** Nothing runs: the message goes to the dead-letter subject with the reason, and an
   *  ActionRejected audit event says so. */
  private async reject(env: Envelope<Action>, reason: string, detail: string, log: Logger): Promise<Outcome> {
    const a = env.data;
    const message = `${reason}: ${detail}`.slice(0, 2000);
    log.warn({ reason, detail, source: env.source }, 'action rejected: not run');
    await this.d.bus.deadLetter(subjects.action('approved'), new TextEncoder().encode(JSON.stringify(env)), `action rejected (${message})`);
    await this.d.bus.publish(subjects.action('rejected'), 'ActionRejected', { ...a, error: { code: 'HOMEOSTAT_ERR_ACTION_REJECTED', message } }, {
      correlationId: env.correlationId, causationId: env.id, msgId: `${a.actionId}.rejected.${env.id}`,
    });
    return 'ack';
  }

  /** Publish the outcome (dedup id per action), then the done marker, then free the guest. */
  private async finish(env: Envelope<Action>, lock: HeldLock | undefined, data: Action, outcome: 'succeeded' | 'failed'): Promise<void> {
    const type = outcome === 'succeeded' ? 'ActionSucceeded' : 'ActionFailed';
    await this.d.bus.publish(subjects.action(outcome), type, data, {
      correlationId: env.correlationId,
      causationId: lock?.value.startedEnvId ?? env.id,
      msgId: `${data.actionId}.${outcome}`,
    });
    // still ours (a CAS on the lock), then the marker (a CAS create) while we hold it
    await lock?.update({});
    await this.d.locks.markDone({ actionId: data.actionId, outcome, at: new Date().toISOString(), upid: data.upid, verified: data.verified, error: data.error, envId: env.id });
    await lock?.release();
  }

  /** The state-changing call, sent once. No answer → the task list says whether it started. */
  private async callOnce(a: Action, g: GuestAddress, lock: HeldLock, attempt: number, signal: AbortSignal, log: Logger): Promise<string> {
    await lock.update({ phase: 'calling', attempt, calledAt: Date.now() });
    try {
      return await this.call(a, g);
    } catch (e) {
      if (!isHomeostatError(e, 'HOMEOSTAT_ERR_PVE_UNCERTAIN')) throw e;
      log.warn({ err: e.message }, 'no answer to the PVE call; looking for its task before anything else');
      const upid = await this.findTask(a, g, lock, Date.now() + SETTLE_GRACE_MS, signal);
      if (upid) return upid;
      throw new HomeostatError('HOMEOSTAT_ERR_PVE_UNAVAILABLE', `${a.verb} of guest ${g.vmid} got no answer and started no task (${e.message})`, { cause: e });
    }
  }

  private findTask(a: Action, g: GuestAddress, lock: HeldLock, settledAt: number, signal: AbortSignal): Promise<string | undefined> {
    const v = lock.value;
    return findStartedTask(this.d.pve, a, g, {
      calledAt: v.calledAt ?? v.since, settledAt, known: v.pastUpids ?? [], deadline: Date.now() + this.taskTimeoutMs(a), signal,
    });
  }

  private address(a: Action): GuestAddress {
    return { node: a.target.node, vmid: a.target.vmid, type: this.d.fleet.byVmid.get(a.target.vmid)?.type ?? 'lxc' };
  }

  /** Is the guest already where the action would put it? Then there is nothing to call. */
  private async alreadyThere(a: Action, g: GuestAddress): Promise<boolean> {
    const want = expectedState(a);
    try {
      if (a.verb === 'migrate') return (await this.d.pve.clusterGuests()).some((x) => x.vmid === g.vmid && x.node === a.params.targetNode);
      if (want === 'exists' || a.verb === 'reboot') return false;
      return (await this.d.pve.guestStatus(g)).status === want;
    } catch {
      return false;
    }
  }

  private call(a: Action, g: GuestAddress): Promise<string> {
    const { pve } = this.d;
    const timeoutSec = a.params.timeoutSec ?? this.policies.shutdownTimeoutSec;
    switch (a.verb) {
      case 'start': return pve.start(g);
      case 'stop': return pve.stop(g);
      case 'shutdown': return pve.shutdown(g, { timeoutSec, forceStop: false });
      case 'reboot': return pve.reboot(g, { timeoutSec });
      case 'migrate':
        if (!a.params.targetNode) throw new HomeostatError('HOMEOSTAT_ERR_PVE_BAD_REQUEST', 'migrate without params.targetNode');
        return pve.migrate(g, a.params.targetNode, g.type === 'qemu' ? { online: true } : { restart: true });
      case 'rollback':
        if (!a.params.snapname) throw new HomeostatError('HOMEOSTAT_ERR_PVE_BAD_REQUEST', 'rollback without params.snapname');
        return pve.rollback(g, a.params.snapname);
    }
  }
}

function nodeOfUpid(upid: string): string | undefined {
  return /^UPID:([^:]+):/.exec(upid)?.[1];
}

function coded(e: unknown): { code: string; message: string } {
  if (isHomeostatError(e)) return { code: e.code, message: e.message };
  return { code: 'HOMEOSTAT_ERR_INTERNAL', message: e instanceof Error ? e.message : String(e) };
}
