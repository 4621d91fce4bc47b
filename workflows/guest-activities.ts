// The I/O actors of the boot and shutdown machines. Power operations go through the action agent
// (audited, locked, deduplicated by the machine's actionId); state and health are read from the
// FleetObserver. Every actor is safe to run twice with the same input (xstate re-invokes in-flight
// actors after a restore): the action tracker never publishes an actionId twice.
import { fromPromise } from 'xstate';
import { givePlace, startActionId } from '../state-machines/mod.ts';
import type {
  ShutdownGuestActorInput, StartGuestInput, StopGuestActorInput, StopOutput, WaitHealthyInput, WaitHealthyOutput,
} from '../state-machines/mod.ts';
import { isActionFailed } from './actions.ts';
import { guestRef, lockedByOther, releaseGuest, runAction, setDesired, type RunContext, type WorkflowDeps } from './deps.ts';
import { HomeostatError } from '../core/mod.ts';
import { subjects } from '../bus/mod.ts';

/** Run `fn` with a signal that aborts when the actor's does or when `fn` settles (cleans up waiters). */
export async function scoped<T>(signal: AbortSignal, fn: (s: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onAbort = () => ac.abort(signal.reason);
  if (signal.aborted) ac.abort(signal.reason);
  else signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await fn(ac.signal);
  } finally {
    signal.removeEventListener('abort', onAbort);
    ac.abort(new Error('done'));
  }
}

/** Start `vmid` on `node` through the action agent, resolving once the action has started. A guest
 *  that already runs (and that this workflow did not start) is not started again. */
export async function startThroughAgent(d: WorkflowDeps, run: RunContext, p: { vmid: number; node: string; actionId: string; attempt?: number; rationale: string; onApproved?: () => void }, signal: AbortSignal): Promise<void> {
  if (!d.actions.state(p.actionId)) {
    const g = (await d.observer.recent().catch(() => undefined))?.guests.get(p.vmid);
    if (g?.status === 'running' && !(await lockedByOther(d.bus, p.vmid))) return;
  }
  await runAction(d, run, { actionId: p.actionId, verb: 'start', target: guestRef(d.fleet, p.vmid, p.node), attempt: p.attempt, rationale: p.rationale }, 'started', signal, p.onApproved);
}

/** Healthy (running, health check passing, and on `node` when given), or the start action failed
 *  while the guest is not running. With `verifiedStart`, the start action's success counts as
 *  healthy too: the action agent verified the guest running and its health check passing (often
 *  before the next fleet poll: at 5,000 guests a poll takes a few hundred ms, once per layer on the
 *  critical path, bench/boot.ts). Clears this workflow's maintenance flag on success. */
export async function waitGuestHealthy(d: WorkflowDeps, run: RunContext, p: { vmid: number; node?: string; startActionId: string; verifiedStart?: boolean }, signal: AbortSignal): Promise<{ at: number }> {
  // a success seen before this wait began (a resumed run) may be old news: the fleet decides then
  const verifiedStart = p.verifiedStart === true && d.actions.state(p.startActionId)?.phase !== 'succeeded';
  const at = await scoped(signal, async (s) => {
    const healthy = d.observer.waitFor((v) => {
      const g = v.guests.get(p.vmid);
      return g?.status === 'running' && g.healthy && (p.node === undefined || g.node === p.node) ? v.at : undefined;
    }, s);
    const failed = d.actions.waitFor(p.startActionId, 'terminal', s).promise.then(
      // succeeded: verified running and healthy; else (or not a start) the health check decides
      (st) => (verifiedStart && st.action.verb === 'start' && st.action.verified === true ? st.at : new Promise<never>(() => undefined)),
      async (e: unknown) => {
        if (!isActionFailed(e)) return new Promise<never>(() => undefined); // aborted: nothing to say
        const g = (await d.observer.view().catch(() => undefined))?.guests.get(p.vmid);
        if (g?.status === 'running') return new Promise<never>(() => undefined); // e.g. "already running": health decides
        throw e;
      },
    );
    healthy.catch(() => undefined);
    failed.catch(() => undefined);
    return Promise.race([healthy, failed]);
  });
  await releaseGuest(d.bus, p.vmid, run.workflowId).catch((e: unknown) => d.log.warn({ vmid: p.vmid, err: (e as Error).message }, 'could not clear maintenance flag'));
  return { at };
}

/** Shut down or stop through the action agent; done when PVE shows the guest stopped. */
async function powerOff(d: WorkflowDeps, run: RunContext, verb: 'shutdown' | 'stop', p: { vmid: number; node: string; actionId: string; timeoutSec?: number }, signal: AbortSignal): Promise<StopOutput> {
  const isStopped = (status?: string) => status === 'stopped';
  if (!d.actions.state(p.actionId)) {
    const v = await d.observer.recent().catch(() => undefined);
    if (v && isStopped(v.guests.get(p.vmid)?.status) && !(await lockedByOther(d.bus, p.vmid))) return { at: v.at };
  }
  const at = await scoped(signal, async (s) => {
    const stopped = d.observer.waitFor((v) => (isStopped(v.guests.get(p.vmid)?.status) ? v.at : undefined), s);
    const acted = runAction(d, run, {
      actionId: p.actionId, verb, target: guestRef(d.fleet, p.vmid, p.node),
      params: verb === 'shutdown' && p.timeoutSec ? { timeoutSec: Math.min(3600, p.timeoutSec) } : {},
      rationale: `${run.kind} workflow ${run.workflowId}`,
      // the machine stops only a guest whose graceful shutdown failed: it is hung
      hung: verb === 'stop',
    }, 'terminal', s).then(
      (st) => st.at,
      async (e: unknown) => {
        const v = await d.observer.view().catch(() => undefined);
        if (v && isStopped(v.guests.get(p.vmid)?.status)) return v.at;
        throw e;
      },
    );
    stopped.catch(() => undefined);
    acted.catch(() => undefined);
    return Promise.race([stopped, acted]);
  });
  return { at };
}

export function bootActors(d: WorkflowDeps, run: RunContext) {
  return {
    startGuest: fromPromise<unknown, StartGuestInput>(async ({ input, signal }) => {
      await setDesired(d.bus, [input.vmid], 'running', { workflowId: run.workflowId, reason: 'layered boot', maintenance: true });
      // approved, the start only waits for the action agent (which bounds its own starts): the
      // next step may ask the gate meanwhile. Holding the place until the action started kept the
      // 64 places ~0.9 s each at 5,000 guests, ~70 starts/s at most (bench/boot.ts)
      await startThroughAgent(d, run, {
        vmid: input.vmid, node: input.node, actionId: input.actionId, attempt: input.attempt, rationale: `layered boot ${run.workflowId}`, onApproved: () => givePlace(input),
      }, signal);
    }),
    waitHealthy: fromPromise<WaitHealthyOutput, WaitHealthyInput>(({ input, signal }) =>
      waitGuestHealthy(d, run, { vmid: input.vmid, startActionId: startActionId(input.workflowId, input.vmid, input.attempt), verifiedStart: true }, signal)),
  };
}

/** A protected guest in a shutdown (`--include-protected`) is an operator proposal to the
 *  decision agent's policy gate, which asks for an approval; the workflow waits for its outcome. */
async function shutdownThroughGate(d: WorkflowDeps, run: RunContext, vmid: number, signal: AbortSignal): Promise<StopOutput> {
  const v = await d.observer.view().catch(() => undefined);
  if (v?.guests.get(vmid)?.status === 'stopped') return { at: v.at };
  const r = await d.bus.request<{ actionId?: string; verdict: string; reasons: string[] }>(subjects.cmd('action'), 'Command', { args: { verb: 'shutdown', vmid, by: `workflow ${run.workflowId}` }, requestedBy: `workflow:${run.workflowId}` }, 10_000);
  if (!r.actionId || r.verdict === 'deny' || r.verdict === 'hold') {
    throw new HomeostatError('HOMEOSTAT_ERR_POLICY_DENIED', `protected guest ${vmid}: the policy gate said ${r.verdict}: ${r.reasons.join('; ')}`);
  }
  d.log.info({ vmid, actionId: r.actionId, verdict: r.verdict }, 'protected guest: shutdown waits for the gate (approval)');
  const st = await d.actions.waitFor(r.actionId, 'terminal', signal).promise;
  return { at: st.at };
}

export function shutdownActors(d: WorkflowDeps, run: RunContext) {
  const isProtected = (vmid: number) => d.fleet.byVmid.get(vmid)?.protected === true;
  return {
    shutdownGuest: fromPromise<StopOutput, ShutdownGuestActorInput>(async ({ input, signal }) => {
      // desired state first: a deliberate shutdown must never be "healed"
      await setDesired(d.bus, [input.vmid], 'stopped', { workflowId: run.workflowId, reason: 'graceful shutdown' });
      if (isProtected(input.vmid)) return shutdownThroughGate(d, run, input.vmid, signal);
      return powerOff(d, run, 'shutdown', { vmid: input.vmid, node: input.node, actionId: input.actionId, timeoutSec: input.timeoutSec }, signal);
    }),
    stopGuest: fromPromise<StopOutput, StopGuestActorInput>(async ({ input, signal }) => {
      // never a hard power-off of a protected guest from a workflow: it stays for the operator
      if (isProtected(input.vmid)) throw new HomeostatError('HOMEOSTAT_ERR_POLICY_DENIED', `protected guest ${input.vmid}: no hard stop without an operator`);
      return powerOff(d, run, 'stop', { vmid: input.vmid, node: input.node, actionId: input.actionId }, signal);
    }),
  };
}

