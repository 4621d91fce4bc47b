// The I/O actors of ChaosExperimentMachine. Faults go to the simulator's /sim/faults, or, against
// real PVE, are guest stop/shutdown actions through the action agent (never node-level). Heals are
// observed, never assumed; rollbacks are idempotent because they may run twice after a restart.
import { fromCallback, fromPromise, type EventObject } from 'xstate';
import { HomeostatError, sleep } from '../core/mod.ts';
import { DesiredState, Incident, kvGet, kvList, kvPut, subjects, token } from '../bus/mod.ts';
import type {
  CheckSteadyStateInput, CheckSteadyStateOutput, FaultRecord, InjectFaultInput, InjectFaultOutput, RunRollbacksInput, WatchAbortInput, WatchHealInput,
} from '../state-machines/mod.ts';
import { REAL_PVE_FAULTS, type Probe, type Rollback } from './experiment.ts';
import { guestRef, lockedByOther, runAction, type RunContext, type WorkflowDeps } from './deps.ts';
import type { FleetView } from './observer.ts';
import { z } from 'zod';

/** What an injection did, kept in the workflows bucket so a restored run never injects twice. */
const Marker = z.record(z.string(), z.object({ at: z.number(), faultId: z.string().optional(), affected: z.array(z.number()).default([]) }));
type Marker = z.infer<typeof Marker>;
export const markerKey = (workflowId: string) => `fx.${token(workflowId)}`;

const ACTION_WAIT_MS = 120_000;

async function wantedUp(d: WorkflowDeps): Promise<Set<number>> {
  const desired = await kvList(d.bus.kv.fleetState, 'desired.', DesiredState);
  const out = new Set<number>();
  for (const g of d.fleet.guests) {
    const w = desired.get(`desired.${g.vmid}`);
    if (!w || (w.state === 'running' && !w.maintenance)) out.add(g.vmid);
  }
  return out;
}

async function evaluate(d: WorkflowDeps, probes: Probe[], v: FleetView): Promise<string[]> {
  const failures: string[] = [];
  const bad = (vmid: number) => {
    const g = v.guests.get(vmid);
    return !g ? `${vmid} unknown` : g.status !== 'running' ? `${vmid} is ${g.status}` : !g.healthy ? `${vmid} is unhealthy` : undefined;
  };
  for (const p of probes) {
    if (p.probe === 'all-guests-healthy') {
      const up = await wantedUp(d);
      const down = [...up].filter((v) => !p.except?.includes(v)).map(bad).filter((x): x is string => !!x);
      if (down.length) failures.push(`not all guests healthy: ${down.slice(0, 5).join(', ')}${down.length > 5 ? `, … (${down.length})` : ''}`);
    } else if (p.probe === 'guest-healthy') {
      const b = bad(p.vmid);
      if (b) failures.push(b);
    } else if (p.probe === 'node-online') {
      if (!v.nodes.get(p.node)?.online) failures.push(`node ${p.node} is not online`);
    } else if (p.probe === 'no-open-incidents') {
      const open = [...(await kvList(d.bus.kv.incidents, '', Incident)).values()].filter((i) => i.status === 'open');
      if (open.length) failures.push(`${open.length} open incident(s): ${open.slice(0, 3).map((i) => i.id).join(', ')}`);
    }
  }
  return failures;
}

async function readMarker(d: WorkflowDeps, workflowId: string): Promise<Marker> {
  return (await kvGet(d.bus.kv.workflows, markerKey(workflowId), Marker))?.value ?? {};
}

const guestTarget = (f: { target: string | number; healTarget?: number }) => f.healTarget ?? (typeof f.target === 'number' || /^\d+$/.test(String(f.target)) ? Number(f.target) : undefined);

export function chaosActors(d: WorkflowDeps, run: RunContext) {
  /** Faults seen to have taken effect (a heal counts only after that). */
  const broken = new Set<number>();

  const isBroken = (v: FleetView, f: { kind: string; target: string | number; healTarget?: number }) => {
    if (f.kind === 'node-down') return v.nodes.get(String(f.target))?.online === false;
    const vmid = guestTarget(f);
    const g = vmid === undefined ? undefined : v.guests.get(vmid);
    return !!g && (g.status !== 'running' || !g.healthy);
  };

  return {
    checkSteadyState: fromPromise<CheckSteadyStateOutput, CheckSteadyStateInput>(async ({ input, signal }) => {
      // after the heal the fleet may need a few sense rounds to settle: keep looking for a while
      const deadline = Date.now() + (input.phase === 'before' ? 3000 : 60_000);
      for (;;) {
        const failures = await evaluate(d, input.probes as Probe[], await d.observer.view());
        if (!failures.length) return { ok: true };
        if (Date.now() > deadline) return { ok: false, failures };
        await sleep(250, signal);
      }
    }),

    injectFault: fromPromise<InjectFaultOutput, InjectFaultInput>(async ({ input, signal }) => {
      const marks = await readMarker(d, run.workflowId);
      const done = marks[input.actionId];
      if (done) return { at: done.at, ...(done.faultId ? { faultId: done.faultId } : {}) };
      const f = input.fault;
      if (input.rep > 0 && f.expect !== 'none') await healedOrHeld(d, f, signal);
      const before = await d.observer.view();
      let rec: Marker[string];
      if ((REAL_PVE_FAULTS as readonly string[]).includes(f.fault)) {
        const vmid = Number(f.target);
        const node = before.guests.get(vmid)?.node ?? d.fleet.byVmid.get(vmid)?.node ?? '';
        const s = await runAction(d, run, { actionId: input.actionId, verb: f.fault as 'stop' | 'shutdown', target: guestRef(d.fleet, vmid, node), proposer: 'chaos', rationale: `chaos experiment ${run.workflowId}` }, 'terminal', signal);
        rec = { at: s.at, affected: [vmid] };
      } else {
        if (!d.sim) throw new HomeostatError('HOMEOSTAT_ERR_EXPERIMENT', `method[${input.index}].fault: ${f.fault} needs the simulator; against real PVE only ${REAL_PVE_FAULTS.join('/')}`);
        const mine = (await d.sim.faults()).find((x) => x.params?.homeostatAction === input.actionId);
        const affected = f.fault === 'node-down' ? [...before.guests.values()].filter((g) => g.node === String(f.target)).map((g) => g.vmid) : [];
        const fault = mine ?? await d.sim.injectFault({
          kind: f.fault, target: f.target, ...(f.durationMs ? { durationMs: f.durationMs } : {}),
          params: { ...(f.params ?? {}), homeostatAction: input.actionId, homeostatWorkflow: run.workflowId },
        });
        rec = { at: Date.now(), faultId: fault.id, affected };
      }
      await kvPut(d.bus.kv.workflows, markerKey(run.workflowId), { ...(await readMarker(d, run.workflowId)), [input.actionId]: rec });
      // wait (briefly) to see the fault bite, so a heal is only counted after it did
      const probe = { kind: f.fault, target: f.target, healTarget: f.healTarget };
      if (f.expect !== 'none') {
        const bit = await d.observer.waitFor((v) => isBroken(v, probe), AbortSignal.any([signal, AbortSignal.timeout(3000)])).catch(() => false);
        if (bit) broken.add(input.index);
      } else if (f.durationMs) {
        // nothing to heal: the fault simply lasts its duration, then the next step (or the
        // steady-state check) follows — "500 for 8 s, then slowly" runs in that order
        await sleep(Math.max(0, rec.at + f.durationMs - Date.now()), signal);
      }
      return { at: rec.at, ...(rec.faultId ? { faultId: rec.faultId } : {}) };
    }),

    watchHeal: fromCallback<EventObject, WatchHealInput>(({ input, sendBack }) => {
      const ac = new AbortController();
      void (async () => {
        const marks = await readMarker(d, run.workflowId);
        await Promise.all(input.faults.map(async (f) => {
          const at = await watchOne(d, f, marks[f.actionId]?.affected ?? [], broken.has(f.index), (v) => isBroken(v, f), ac.signal);
          sendBack({ type: 'HEAL.OBSERVED', index: f.index, at });
        }));
      })().catch((e: unknown) => {
        if (!ac.signal.aborted) d.log.warn({ err: (e as Error).message }, 'heal watcher failed');
      });
      return () => ac.abort(new Error('heal watcher stopped'));
    }),

    watchAbort: fromCallback<EventObject, WatchAbortInput>(({ input, sendBack }) => {
      const max = input.abort?.maxGuestsDown;
      if (max === undefined) return () => undefined;
      const ac = new AbortController();
      void (async () => {
        const up = await wantedUp(d);
        const down = await d.observer.waitFor((v) => {
          const n = [...up].filter((vmid) => !v.guests.get(vmid)?.healthy).length;
          return n > max ? n : undefined;
        }, ac.signal);
        sendBack({ type: 'ABORT', reason: `${down} guests down at once, more than abort.maxGuestsDown ${max}` });
      })().catch(() => undefined);
      return () => ac.abort(new Error('abort watcher stopped'));
    }),

    runRollbacks: fromPromise<unknown, RunRollbacksInput>(async ({ input, signal }) => runRollbacks(d, run, input, signal)),
  };
}

/** A repeated fault (flapping) strikes again only once homeostat brought the guest back, or gave
 *  up on it (a flapping incident): otherwise the repeats would all hit one outage. */
async function healedOrHeld(d: WorkflowDeps, f: { target: string | number; healTarget?: number; intervalMs?: number }, signal: AbortSignal): Promise<void> {
  const vmid = guestTarget(f);
  if (vmid === undefined) return;
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline) {
    const g = (await d.observer.view()).guests.get(vmid);
    // healthy, and the remediation that made it so is over (its action no longer holds the guest)
    if (g?.status === 'running' && g.healthy && !(await lockedByOther(d.bus, vmid))) return;
    const incidents = await kvList(d.bus.kv.incidents, '', Incident);
    if ([...incidents.values()].some((i) => i.kind === 'flapping' && i.status === 'open' && i.rootCause.vmid === vmid)) return;
    await sleep(100, signal);
  }
}

async function watchOne(d: WorkflowDeps, f: FaultRecord, affected: number[], seenBroken: boolean, brokenNow: (v: FleetView) => boolean, signal: AbortSignal): Promise<number> {
  if (f.expect === 'held') {
    const vmid = guestTarget(f);
    for (;;) {
      const incidents = await kvList(d.bus.kv.incidents, '', Incident);
      const hit = [...incidents.values()].find((i) => i.kind === 'flapping' && i.status === 'open' && (vmid === undefined || i.rootCause.vmid === vmid) && Date.parse(i.openedAt) >= (f.injectedAt ?? 0) - 60_000);
      if (hit) return Math.max(Date.parse(hit.openedAt), f.injectedAt ?? 0);
      await sleep(250, signal);
    }
  }
  const vmids = f.kind === 'node-down' ? affected : [guestTarget(f)].filter((x): x is number => x !== undefined);
  let wasBroken = seenBroken;
  return d.observer.waitFor((v) => {
    if (!wasBroken) {
      wasBroken = brokenNow(v);
      return undefined;
    }
    const ok = vmids.every((vmid) => {
      const g = v.guests.get(vmid);
      return g?.status === 'running' && g.healthy && (f.kind !== 'node-down' || g.node !== String(f.target) || v.nodes.get(g.node)?.online);
    });
    return ok ? v.at : undefined;
  }, signal);
}

async function runRollbacks(d: WorkflowDeps, run: RunContext, input: RunRollbacksInput, signal: AbortSignal): Promise<{ done: string[] }> {
  const done: string[] = [];
  const errors: string[] = [];
  const wait = () => AbortSignal.any([signal, AbortSignal.timeout(ACTION_WAIT_MS)]);
  const act = async (id: string, verb: 'start' | 'rollback', vmid: number, params: Record<string, string> = {}) => {
    const v = await d.observer.view();
    const g = v.guests.get(vmid);
    if (verb === 'start' && g?.status === 'running') return;
    await runAction(d, run, { actionId: id, verb, target: guestRef(d.fleet, vmid, g?.node ?? d.fleet.byVmid.get(vmid)?.node ?? ''), params, proposer: 'chaos', rationale: `rollback of chaos experiment ${run.workflowId}` }, 'terminal', wait());
  };
  for (const [i, r] of (input.rollbacks as Rollback[]).entries()) {
    try {
      if (r.action === 'clear-faults') {
        if (d.sim) {
          const ids = new Set(input.faults.map((f) => f.faultId).filter((x): x is string => !!x));
          for (const f of await d.sim.faults()) if (f.params?.homeostatWorkflow === run.workflowId) ids.add(f.id);
          for (const id of ids) await d.sim.healFault(id);
        }
      } else if (r.action === 'start') {
        await act(`${input.actionId}:${i}:${r.vmid}`, 'start', r.vmid);
      } else if (r.action === 'start-all') {
        const up = await wantedUp(d);
        const layers = [...new Set(d.fleet.guests.map((g) => g.layer))].sort((a, b) => a - b);
        for (const layer of layers) {
          const gs = d.fleet.guests.filter((g) => g.layer === layer && up.has(g.vmid));
          await Promise.all(gs.map((g) => act(`${input.actionId}:${i}:${g.vmid}`, 'start', g.vmid)));
        }
      } else if (r.action === 'clear-hold') {
        await d.bus.request(subjects.cmd('hold.clear'), 'Command', { args: { vmid: r.vmid, by: `chaos:${run.workflowId}` }, requestedBy: 'workflows' }, 5000);
      } else if (r.action === 'rollback-snapshot') {
        await act(`${input.actionId}:${i}:${r.vmid}`, 'rollback', r.vmid, { snapname: r.snapname });
      }
      done.push(r.action);
    } catch (e) {
      if (signal.aborted) throw e;
      errors.push(`rollbacks[${i}] ${r.action}: ${(e as Error).message}`);
    }
  }
  if (errors.length) throw new HomeostatError('HOMEOSTAT_ERR_WORKFLOW', errors.join('; '));
  return { done };
}
