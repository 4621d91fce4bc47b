// Read models for the operator: status, incidents, pending approvals. Pure reads of KV (plus one
// request for approvals), shared by the operator agent and the CLI's fallback when it is not running.
import { z } from 'zod';
import {
  AdvisorRecord, ApiRecord, DesiredState, GuestRecord, Incident, kvGet, kvKeys, kvList, NodeRecord, subjects, WorkflowRecord,
  type Bus,
} from '../../bus/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';

export const PendingApproval = z.object({
  actionId: z.string(),
  verb: z.string(),
  target: z.object({ vmid: z.number(), node: z.string().optional(), name: z.string().optional() }).passthrough(),
  proposer: z.string().optional(),
  rationale: z.string().optional(),
  requestedAt: z.string().optional(),
  expiresAt: z.union([z.string(), z.number()]).optional(),
  incidentId: z.string().optional(),
}).passthrough();
export type PendingApproval = z.infer<typeof PendingApproval>;

export interface GuestStatus {
  vmid: number;
  name: string;
  node: string;
  layer: number;
  protected: boolean;
  state: string;
  health: string;
  desired: 'running' | 'stopped';
  maintenance: boolean;
  reachable: boolean;
  ok: boolean;
  since?: string;
}

export interface FleetStatus {
  fleet: string;
  nodes: (NodeRecord | { node: string; status: 'unknown'; reachable: boolean; fenced: boolean; updatedAt?: string })[];
  guests: GuestStatus[];
  incidents: Incident[];
  approvals: PendingApproval[];
  api?: ApiRecord;
  advisor?: AdvisorRecord;
  workflows: { workflowId: string; kind: string; status: string; updatedAt: string }[];
  summary: { guests: number; ok: number; down: number; openIncidents: number; pendingApprovals: number };
}

export async function openIncidents(bus: Bus, all = false): Promise<Incident[]> {
  const list = [...(await kvList(bus.kv.incidents, '', Incident)).values()];
  return list
    .filter((i) => all || i.status === 'open')
    .sort((a, b) => (a.status === b.status ? b.openedAt.localeCompare(a.openedAt) : a.status === 'open' ? -1 : 1));
}

export async function pendingApprovals(bus: Bus): Promise<PendingApproval[]> {
  try {
    const r = await bus.request<unknown>(subjects.cmd('approvals'), 'Command', { args: {} }, 2000);
    const list = Array.isArray(r) ? r : (r as { approvals?: unknown[] })?.approvals ?? [];
    return list.map((x) => PendingApproval.safeParse(x)).filter((x) => x.success).map((x) => x.data!);
  } catch {
    return [];
  }
}

export async function fleetStatus(bus: Bus, fleet: Fleet): Promise<FleetStatus> {
  const [guests, nodes, desired, incidents, approvals, api, advisor, workflows] = await Promise.all([
    kvList(bus.kv.fleetState, 'guest.', GuestRecord),
    kvList(bus.kv.fleetState, 'node.', NodeRecord),
    kvList(bus.kv.fleetState, 'desired.', DesiredState),
    openIncidents(bus),
    pendingApprovals(bus),
    kvGet(bus.kv.fleetState, kvKeys.api(), ApiRecord),
    kvGet(bus.kv.fleetState, kvKeys.advisor(), AdvisorRecord),
    kvList(bus.kv.workflows, '', WorkflowRecord).catch(() => new Map<string, WorkflowRecord>()),
  ]);
  const gs: GuestStatus[] = fleet.guests.map((g) => {
    const rec = guests.get(kvKeys.guest(g.vmid));
    const want = desired.get(kvKeys.desired(g.vmid));
    const desiredState = want?.state ?? 'running';
    const state = rec?.state ?? 'unknown';
    const health = rec?.health ?? 'unknown';
    const ok = want?.maintenance ? true : desiredState === 'running' ? state === 'running' && health !== 'unhealthy' : state === 'stopped';
    return {
      vmid: g.vmid, name: g.name, node: rec?.node ?? g.node, layer: g.layer, protected: g.protected, state, health,
      desired: desiredState, maintenance: want?.maintenance ?? false, reachable: rec?.reachable ?? true, ok, since: rec?.stateSince,
    };
  }).sort((a, b) => a.layer - b.layer || a.vmid - b.vmid);
  const ns = fleet.nodes.map((n) => nodes.get(kvKeys.node(n.name)) ?? { node: n.name, status: 'unknown' as const, reachable: false, fenced: false });
  return {
    fleet: fleet.name,
    nodes: ns,
    guests: gs,
    incidents,
    approvals,
    api: api?.value,
    advisor: advisor?.value,
    workflows: [...workflows.values()]
      .filter((w) => w.status === 'running')
      .map((w) => ({ workflowId: w.workflowId, kind: w.kind, status: w.status, updatedAt: w.updatedAt })),
    summary: {
      guests: gs.length,
      ok: gs.filter((g) => g.ok).length,
      down: gs.filter((g) => !g.ok).length,
      openIncidents: incidents.length,
      pendingApprovals: approvals.length,
    },
  };
}
