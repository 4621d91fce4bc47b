// The I/O actors of NodeFailoverMachine. The machine only ever reaches recovery through
// confirmFence (after the fence delay) and fenceNode; these make sure "confirmed" and "fenced"
// mean something. What happens on real hardware is documented in docs/workflows.md.
import { fromPromise } from 'xstate';
import { HomeostatError, isHomeostatError, sleep } from '../core/mod.ts';
import { kvGet, kvKeys, NodeRecord, subjects, type ProposalVerdict } from '../bus/mod.ts';
import { recoverActionId } from '../state-machines/mod.ts';
import type {
  ConfirmFenceInput, ConfirmFenceOutput, FenceNodeInput, RecoverGuestInput, VerifyRecoveryInput, VerifyRecoveryOutput,
  WaitHealthyInput, WaitHealthyOutput,
} from '../state-machines/mod.ts';
import { isActionFailed } from './actions.ts';
import { guestRef, runAction, setDesired, type RunContext, type WorkflowDeps } from './deps.ts';
import { scoped, startThroughAgent, waitGuestHealthy } from './guest-activities.ts';

export const recoverStartId = (workflowId: string, vmid: number, attempt: number) => `${recoverActionId(workflowId, vmid, attempt)}:start`;

const unreachable = (e: unknown) => isHomeostatError(e, 'HOMEOSTAT_ERR_PVE_UNAVAILABLE') || isHomeostatError(e, 'HOMEOSTAT_ERR_PVE_TIMEOUT');

/** Offline only when the cluster says so (with quorum on our side) AND the node's own API does not
 *  answer AND sensing, if it looked recently, agrees. Any doubt: not offline. */
export async function confirmNodeGone(d: WorkflowDeps, node: string, signal?: AbortSignal): Promise<ConfirmFenceOutput> {
  const pve = d.pve;
  if (!pve) throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', 'PVE_URL: no PVE API configured, cannot confirm a node is gone');
  let last: unknown;
  for (let i = 0; i < 5; i++) {
    try {
      const status = await pve.clusterStatus();
      const cluster = status.find((e) => e.type === 'cluster');
      const entry = status.find((e) => e.type === 'node' && e.name === node);
      if (!entry) return { offline: false, detail: `${node} is not in /cluster/status` };
      if (entry.online !== false) return { offline: false, detail: `/cluster/status shows ${node} online` };
      if (cluster?.quorate === false) return { offline: false, detail: 'the cluster has no quorum: recovering now could run a guest twice' };
      // sensing polls every node each round: its "unreachable" (next to the live cluster view above)
      // saves a slow probe; its recent "reachable" vetoes; without either, ask the node itself
      const rec = await kvGet(d.bus.kv.fleetState, kvKeys.node(node), NodeRecord);
      const fresh = rec && Date.now() - Date.parse(rec.value.updatedAt) < 3 * d.fleet.policies.senseIntervalMs;
      if (fresh && rec.value.reachable) return { offline: false, detail: `sensing reached ${node} at ${rec.value.updatedAt}` };
      if (!rec || rec.value.reachable) {
        try {
          await pve.listGuests(node);
          return { offline: false, detail: `the API of ${node} still answers` };
        } catch (e) {
          if (!unreachable(e)) return { offline: false, detail: `the API of ${node} answers with an error (${(e as Error).message}), not silence` };
        }
      }
      const since = rec?.value.unreachableSince ? `, unreachable since ${rec.value.unreachableSince}` : '';
      return { offline: true, detail: `/cluster/status: ${node} offline, cluster quorate; its API does not answer${since}` };
    } catch (e) {
      last = e;
      await sleep(500, signal);
    }
  }
  throw last;
}

/** Real PVE: the HA manager fences (watchdog) and recovers HA resources; wait until it has. */
async function waitForHaFence(d: WorkflowDeps, node: string, signal: AbortSignal): Promise<void> {
  const pve = d.pve!;
  const deadline = Date.now() + 300_000;
  for (;;) {
    const ha = await pve.haStatus();
    const mine = ha.filter((e) => e.type === 'service' && e.node === node);
    if (!mine.length) {
      throw new HomeostatError('HOMEOSTAT_ERR_WORKFLOW', `no HA-managed guest on ${node}: homeostat does not power-fence real hardware, so it will not recover guests that might still run; recover them by hand or put them under PVE HA`);
    }
    if (!mine.some((e) => e.state === 'fence')) return;
    if (Date.now() > deadline) throw new HomeostatError('HOMEOSTAT_ERR_WORKFLOW', `PVE HA did not fence ${node} within 300 s`);
    await sleep(2000, signal);
  }
}

async function recoverOnSimulator(d: WorkflowDeps, run: RunContext, input: RecoverGuestInput, signal: AbortSignal): Promise<void> {
  const { vmid, from, to } = input;
  const g = (await d.observer.view()).guests.get(vmid);
  if (g && g.node !== from && g.node !== to) throw new HomeostatError('HOMEOSTAT_ERR_WORKFLOW', `guest ${vmid} is on ${g.node}, not on ${from}: not moving it`);
  if (!g || g.node !== to) {
    await scoped(signal, async (s) => {
      const moved = d.observer.waitFor((v) => v.guests.get(vmid)?.node === to, s);
      const acted = runAction(d, run, { actionId: input.actionId, verb: 'migrate', target: guestRef(d.fleet, vmid, from), params: { targetNode: to }, attempt: input.attempt, rationale: `failover of fenced node ${from}` }, 'terminal', s).then(
        () => true,
        async (e: unknown) => {
          // the action agent may fail its own verification (a migrated CT is stopped): trust PVE
          if (isActionFailed(e) && (await d.observer.view()).guests.get(vmid)?.node === to) return true;
          throw e;
        },
      );
      moved.catch(() => undefined);
      acted.catch(() => undefined);
      await Promise.race([moved, acted]);
    });
  }
  await startThroughAgent(d, run, { vmid, node: to, actionId: recoverStartId(run.workflowId, vmid, input.attempt), attempt: input.attempt, rationale: `failover of fenced node ${from}` }, signal);
}

export function failoverActors(d: WorkflowDeps, run: RunContext) {
  return {
    confirmFence: fromPromise<ConfirmFenceOutput, ConfirmFenceInput>(({ input, signal }) => confirmNodeGone(d, input.node, signal)),
    fenceNode: fromPromise<unknown, FenceNodeInput>(async ({ input, signal }) => {
      // fencing is a proposal too: the decision agent's gate may refuse it (dry-run, a live node)
      const r = await d.bus.request<ProposalVerdict>(subjects.propose('fence'), 'FenceProposal', { workflowId: run.workflowId, node: input.node }, 15_000);
      if (r.verdict !== 'allow') throw new HomeostatError(r.verdict === 'dry-run' ? 'HOMEOSTAT_ERR_DRY_RUN' : 'HOMEOSTAT_ERR_POLICY_DENIED', `policy gate: ${r.verdict}: ${r.reasons.join('; ')}`);
      if (d.sim) await d.sim.fence(input.node);
      else await waitForHaFence(d, input.node, signal);
      return { fenced: true };
    }),
    recoverGuest: fromPromise<unknown, RecoverGuestInput>(async ({ input, signal }) => {
      await setDesired(d.bus, [input.vmid], 'running', { workflowId: run.workflowId, reason: `failover from ${input.from}`, maintenance: true });
      if (d.sim) return recoverOnSimulator(d, run, input, signal);
      // real PVE: the HA manager restarts the guest elsewhere; homeostat only watches
      await d.observer.waitFor((v) => {
        const g = v.guests.get(input.vmid);
        return g && g.node !== input.from && g.status === 'running';
      }, signal);
    }),
    waitHealthy: fromPromise<WaitHealthyOutput, WaitHealthyInput>(({ input, signal }) =>
      waitGuestHealthy(d, run, { vmid: input.vmid, node: d.sim ? input.node : undefined, startActionId: recoverStartId(input.workflowId, input.vmid, input.attempt) }, signal)),
    verifyRecovery: fromPromise<VerifyRecoveryOutput, VerifyRecoveryInput>(async ({ input }) => verify(d, input)),
  };
}

/** Every recovered guest runs exactly once, where it was put, and nothing runs on the dead node. */
async function verify(d: WorkflowDeps, input: VerifyRecoveryInput): Promise<VerifyRecoveryOutput> {
  const problems: string[] = [];
  const listed = d.pve ? await d.pve.clusterGuests() : [...(await d.observer.view()).guests.values()].map((g) => ({ vmid: g.vmid, node: g.node, status: g.status }));
  const count = new Map<number, number>();
  for (const g of listed) count.set(g.vmid, (count.get(g.vmid) ?? 0) + 1);
  for (const [vmid, n] of count) if (n > 1) problems.push(`${vmid} is listed ${n} times in the cluster`);
  for (const r of input.recovered) {
    const g = listed.find((x) => x.vmid === r.vmid);
    if (!g) problems.push(`${r.vmid} is not in the cluster any more`);
    else if (g.status !== 'running') problems.push(`${r.vmid} is ${g.status} on ${g.node}`);
    else if (d.sim && g.node !== r.to) problems.push(`${r.vmid} runs on ${g.node}, expected ${r.to}`);
  }
  for (const g of listed) if (g.node === input.node && g.status === 'running') problems.push(`${g.vmid} still shows running on the fenced node ${input.node}`);
  return problems.length ? { ok: false, problems } : { ok: true };
}
