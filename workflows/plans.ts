// Machine inputs from the manifest and the fleet as it is now: where each guest runs (a failover
// may have moved it), what is already healthy or stopped, which nodes survive, and the policies.
import { HomeostatError } from '../core/mod.ts';
import { DesiredState, kvGet, kvKeys, kvList, NodeRecord } from '../bus/mod.ts';
import type { BootInput, FailoverInput, ShutdownInput } from '../state-machines/mod.ts';
import { ancestorsOf } from '../fleet/manifest.ts';
import { lockedByOther, type WorkflowDeps } from './deps.ts';
import type { FleetView } from './observer.ts';

export interface GuestLine {
  vmid: number;
  name: string;
  layer: number;
  node: string;
  dependsOn: number[];
}

function checkLayer(d: WorkflowDeps, layer: number | undefined): void {
  if (layer === undefined) return;
  const layers = [...new Set(d.fleet.guests.map((g) => g.layer))].sort((a, b) => a - b);
  if (!layers.includes(layer)) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `--layer: no layer ${layer} in fleet ${d.fleet.name} (layers: ${layers.join(', ')})`);
}

async function currentView(d: WorkflowDeps): Promise<FleetView> {
  try {
    return await d.observer.view();
  } catch (e) {
    throw new HomeostatError('HOMEOSTAT_ERR_PVE_UNAVAILABLE', `cannot read the fleet's current state: ${(e as Error).message}`, { cause: e });
  }
}

export function guestLines(d: WorkflowDeps, v: FleetView, layer?: number): GuestLine[] {
  return d.fleet.guests
    .filter((g) => layer === undefined || g.layer === layer)
    .map((g) => ({ vmid: g.vmid, name: g.name, layer: g.layer, node: v.guests.get(g.vmid)?.node ?? g.node, dependsOn: d.fleet.deps.get(g.vmid) ?? [] }));
}

export async function bootPlan(d: WorkflowDeps, workflowId: string, args: { layer?: number; dryRun?: boolean }): Promise<{ input: BootInput; guests: GuestLine[] }> {
  checkLayer(d, args.layer);
  const v = await currentView(d);
  const p = d.fleet.policies;
  const input: BootInput = {
    workflowId,
    guests: d.fleet.guests.map((g) => ({
      vmid: g.vmid, node: v.guests.get(g.vmid)?.node ?? g.node, layer: g.layer, dependsOn: d.fleet.deps.get(g.vmid) ?? [],
      bootTimeoutMs: p.guestBootTimeoutMs, expectedBootMs: g.bootMs,
    })),
    alreadyHealthy: [...v.guests.values()].filter((g) => g.status === 'running' && g.healthy && d.fleet.byVmid.has(g.vmid)).map((g) => g.vmid),
    perNodeConcurrency: p.bootConcurrencyPerNode,
    retries: p.guestRetries,
    ...(args.layer !== undefined ? { onlyLayer: args.layer } : {}),
    dryRun: args.dryRun ?? false,
    startedAt: Date.now(),
  };
  return { input, guests: guestLines(d, v, args.layer) };
}

/** With `layer`, only that layer; a guest of it whose dependents elsewhere still run is held.
 *  Protected guests that run, and what they depend on, are left running unless `includeProtected`
 *  (their shutdown then goes through the policy gate and waits for an operator's approval). */
export async function shutdownPlan(d: WorkflowDeps, workflowId: string, args: { layer?: number; dryRun?: boolean; includeProtected?: boolean }): Promise<{ input: ShutdownInput; guests: GuestLine[]; held: { vmid: number; because: number[] }[]; kept: number[] }> {
  checkLayer(d, args.layer);
  const v = await currentView(d);
  const p = d.fleet.policies;
  // a guest another action holds (a reboot halfway) is not "already stopped"
  const busy = new Set<number>();
  await Promise.all(d.fleet.guests.map(async (g) => (await lockedByOther(d.bus, g.vmid)) && busy.add(g.vmid)));
  const running = (vmid: number) => (v.guests.get(vmid)?.status ?? 'unknown') !== 'stopped' || busy.has(vmid);
  const held: { vmid: number; because: number[] }[] = [];
  const kept = new Set<number>();
  if (!args.includeProtected) {
    for (const g of d.fleet.guests) if (g.protected && running(g.vmid)) for (const v of [g.vmid, ...ancestorsOf(d.fleet.deps, g.vmid)]) kept.add(v);
  }
  const scope = d.fleet.guests.filter((g) => {
    if (kept.has(g.vmid)) return false;
    if (args.layer === undefined) return true;
    if (g.layer !== args.layer) return false;
    const outside = d.fleet.guests.filter((x) => x.layer !== args.layer && (d.fleet.deps.get(x.vmid) ?? []).includes(g.vmid) && running(x.vmid)).map((x) => x.vmid);
    if (outside.length) held.push({ vmid: g.vmid, because: outside });
    return outside.length === 0;
  });
  const inScope = new Set(scope.map((g) => g.vmid));
  const input: ShutdownInput = {
    workflowId,
    guests: scope.map((g) => ({
      vmid: g.vmid, node: v.guests.get(g.vmid)?.node ?? g.node, layer: g.layer,
      dependsOn: (d.fleet.deps.get(g.vmid) ?? []).filter((x) => inScope.has(x)), shutdownTimeoutMs: p.shutdownTimeoutSec * 1000,
    })),
    alreadyStopped: scope.filter((g) => !running(g.vmid)).map((g) => g.vmid),
    perNodeConcurrency: p.bootConcurrencyPerNode,
    allowHardStop: p.allowHardStop,
    dryRun: args.dryRun ?? false,
  };
  return { input, guests: guestLines(d, v, args.layer), held, kept: [...kept].filter((v) => args.layer === undefined || d.fleet.byVmid.get(v)?.layer === args.layer) };
}

/** The guests to recover are those PVE places on `node` now and that should run; survivors are
 *  the online nodes, with their free slots. The fence delay counts from when sensing first found
 *  the node unreachable (RESUME after a restart waits the full delay again). */
export async function failoverPlan(d: WorkflowDeps, workflowId: string, node: string, opts: { automatic?: boolean } = {}): Promise<{ input: FailoverInput; unreachableSince?: string; protectedHeld: number[] }> {
  const spec = d.fleet.nodes.find((n) => n.name === node);
  if (!spec) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `unknown node ${JSON.stringify(node)} (nodes: ${d.fleet.nodes.map((n) => n.name).join(', ')})`);
  const v = await currentView(d);
  const desired = await kvList(d.bus.kv.fleetState, 'desired.', DesiredState);
  const wanted = (vmid: number) => desired.get(kvKeys.desired(vmid))?.state !== 'stopped';
  const onNode = d.fleet.guests.filter((g) => (v.guests.get(g.vmid)?.node ?? g.node) === node && wanted(g.vmid));
  // Safety rule: a protected guest needs an operator. An automatic failover (from a node incident)
  // leaves it where it is; `homeostat failover <node>` typed by an operator recovers it.
  const protectedHeld = opts.automatic ? onNode.filter((g) => g.protected).map((g) => g.vmid) : [];
  const here = onNode.filter((g) => !protectedHeld.includes(g.vmid));
  const count = (n: string) => [...v.guests.values()].filter((g) => g.node === n).length;
  const survivors = d.fleet.nodes
    .filter((n) => n.name !== node && v.nodes.get(n.name)?.online !== false)
    .map((n) => ({ node: n.name, freeSlots: Math.max(0, n.capacity - count(n.name)) }));
  const p = d.fleet.policies;
  const rec = await kvGet(d.bus.kv.fleetState, kvKeys.node(node), NodeRecord);
  const since = rec && !rec.value.reachable && rec.value.unreachableSince ? Date.parse(rec.value.unreachableSince) : undefined;
  const fenceDelayMs = since === undefined || Number.isNaN(since) ? p.fenceDelayMs : Math.max(0, p.fenceDelayMs - (Date.now() - since));
  return {
    input: {
      workflowId, node,
      guests: here.map((g) => ({ vmid: g.vmid, layer: g.layer, dependsOn: d.fleet.deps.get(g.vmid) ?? [], healthTimeoutMs: p.guestBootTimeoutMs })),
      survivors, fenceDelayMs,
      healthTimeoutMs: p.guestBootTimeoutMs,
      perNodeConcurrency: p.bootConcurrencyPerNode,
      retries: p.guestRetries,
    },
    ...(rec?.value.unreachableSince ? { unreachableSince: rec.value.unreachableSince } : {}),
    protectedHeld,
  };
}
