// What the activities of every workflow share (passed in, no singletons), and the desired-state
// writes: a workflow's shutdown sets `stopped` so the self-healing loop never "heals" it, and a
// guest a workflow is starting is `running` + `maintenance` until it is healthy, so the loop does
// not race the workflow with starts of its own.
import { DesiredState, kvGet, kvKeys, kvList, kvPut, LockRecord, type Bus, type GuestRef } from '../bus/mod.ts';
import type { Fleet } from '../fleet/manifest.ts';
import type { PveApi } from '../fleet/pve-types.ts';
import { type AppLogger } from '../core/mod.ts';
import type { ActionSpec, ActionState, ActionTracker } from './actions.ts';
import type { FleetObserver } from './observer.ts';
import type { SimClient } from './sim-client.ts';
import type { StepQueue } from '../state-machines/mod.ts';

export const WORKFLOW_KINDS = ['boot', 'shutdown', 'failover', 'chaos'] as const;
export type WorkflowKind = (typeof WORKFLOW_KINDS)[number];

export interface WorkflowDeps {
  bus: Bus;
  log: AppLogger;
  fleet: Fleet;
  pve?: PveApi;
  sim?: SimClient;
  observer: FleetObserver;
  actions: ActionTracker;
  /** The bound on steps in flight over every run of this agent (none: unbounded). */
  steps?: StepQueue;
}

/** One running workflow, as its activities see it. */
export interface RunContext {
  kind: WorkflowKind;
  workflowId: string;
  /** Envelope correlation id for everything it publishes. */
  correlationId: string;
  /** The incident that asked for it (a failover from the decision agent): set on every action, so
   *  `homeostat trace <incident>` shows the workflow's actions and, by correlation, its events. */
  incidentId?: string;
}

/** Run an action for this workflow through the action agent (see ActionTracker.execute). */
export function runAction(d: WorkflowDeps, run: RunContext, spec: Omit<ActionSpec, 'workflowId'>, until: 'started' | 'terminal', signal?: AbortSignal, onApproved?: () => void): Promise<ActionState> {
  return d.actions.execute(
    { ...spec, workflowId: run.workflowId, ...(run.incidentId ? { incidentId: run.incidentId } : {}) },
    { until, correlationId: run.correlationId, signal, onApproved },
  );
}

export function guestRef(fleet: Fleet, vmid: number, node: string): GuestRef {
  const name = fleet.byVmid.get(vmid)?.name;
  return { vmid, node, ...(name ? { name } : {}) };
}

export const byWorkflow = (workflowId: string) => `workflow:${workflowId}`;

export async function setDesired(
  bus: Bus,
  vmids: readonly number[],
  state: 'running' | 'stopped',
  opts: { workflowId: string; reason: string; maintenance?: boolean },
): Promise<void> {
  const at = new Date().toISOString();
  const value: DesiredState = { state, maintenance: opts.maintenance ?? false, by: byWorkflow(opts.workflowId), reason: opts.reason, at };
  // bounded parallelism: a 1,000-guest shutdown writes 1,000 keys
  for (let i = 0; i < vmids.length; i += 64) {
    await Promise.all(vmids.slice(i, i + 64).map((v) => kvPut(bus.kv.fleetState, kvKeys.desired(v), value)));
  }
}

/** Clear the maintenance flag this workflow set on `vmid` (once it is healthy, or at the end). */
export async function releaseGuest(bus: Bus, vmid: number, workflowId: string): Promise<void> {
  const cur = await kvGet(bus.kv.fleetState, kvKeys.desired(vmid), DesiredState);
  if (cur && cur.value.by === byWorkflow(workflowId) && cur.value.maintenance) {
    await kvPut(bus.kv.fleetState, kvKeys.desired(vmid), { ...cur.value, maintenance: false, at: new Date().toISOString() });
  }
}

/** At the end of a workflow: no guest stays in maintenance because of it. */
export async function releaseAll(bus: Bus, workflowId: string): Promise<number> {
  const all = await kvList(bus.kv.fleetState, 'desired.', DesiredState);
  let n = 0;
  for (const [key, d] of all) {
    if (d.by !== byWorkflow(workflowId) || !d.maintenance) continue;
    await kvPut(bus.kv.fleetState, key, { ...d, maintenance: false, at: new Date().toISOString() });
    n++;
  }
  return n;
}

/** Another action holds the guest (a reboot in flight looks "stopped" for a moment): its state
 *  now says nothing about where it will end up. */
export async function lockedByOther(bus: Bus, vmid: number, actionId?: string): Promise<boolean> {
  const l = await kvGet(bus.kv.locks, kvKeys.lock(vmid), LockRecord).catch(() => undefined);
  return !!l && l.value.expiresAt > Date.now() && l.value.actionId !== actionId;
}

/** Resolve with `promise`, and let an abort signal end the wait (not the work). */
export function abortable<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
