// What lives in the KV buckets: keys and value schemas. Writers: sensing owns guest.* / node.* /
// api in fleet-state; operator, workflows and the CLI own desired.*; analysis owns incidents;
// action owns locks; workflows owns workflows.
import { z } from 'zod';
import { GuestState, Health, NodeStatus, Resources, Incident } from './schemas.ts';
import { token } from './subjects.ts';
import type { KV } from '@nats-io/kv';
import { kvList } from './kv.ts';

export const kvKeys = {
  guest: (vmid: number) => `guest.${vmid}`,
  node: (node: string) => `node.${token(node)}`,
  desired: (vmid: number) => `desired.${vmid}`,
  api: () => 'api',
  advisor: () => 'advisor',
  lock: (vmid: number) => `guest.${vmid}`,
  incident: (id: string) => token(id),
  workflow: (id: string) => token(id),
  /** agents bucket: one key per agent instance. */
  heartbeat: (agent: string, instance: string) => `${token(agent)}.${token(instance)}`,
  silence: (id: string) => `silence.${token(id)}`,
} as const;

export const GuestRecord = z.object({
  vmid: z.number().int(),
  name: z.string(),
  node: z.string(),
  type: z.enum(['lxc', 'qemu']),
  layer: z.number().int(),
  state: GuestState,
  health: Health,
  /** Consecutive failed health probes. */
  probeFailures: z.number().int().min(0).default(0),
  lastProbeReason: z.string().optional(),
  resources: Resources.optional(),
  certDaysLeft: z.number().optional(),
  /** Running (PVE says so) but not healthy yet since it started, within the boot grace: not a failure. */
  booting: z.boolean().optional(),
  /** The node this guest's node answered from; false while its node is unreachable. */
  reachable: z.boolean().default(true),
  updatedAt: z.string(),
  stateSince: z.string(),
});
export type GuestRecord = z.infer<typeof GuestRecord>;

export const NodeRecord = z.object({
  node: z.string(),
  status: NodeStatus,
  reachable: z.boolean(),
  unreachableSince: z.string().optional(),
  fenced: z.boolean().default(false),
  resources: Resources.optional(),
  updatedAt: z.string(),
});
export type NodeRecord = z.infer<typeof NodeRecord>;

/** Desired state: only a divergence from it is a failure, so a deliberate shutdown is never "healed". */
export const DesiredState = z.object({
  state: z.enum(['running', 'stopped']),
  maintenance: z.boolean().default(false),
  by: z.string(),
  reason: z.string().default(''),
  at: z.string(),
});
export type DesiredState = z.infer<typeof DesiredState>;

export const ApiRecord = z.object({
  available: z.boolean(),
  since: z.string(),
  code: z.string().optional(),
  reason: z.string().optional(),
});
export type ApiRecord = z.infer<typeof ApiRecord>;

export const AdvisorRecord = z.object({
  available: z.boolean(),
  model: z.string().optional(),
  reason: z.string().optional(),
  checkedAt: z.string(),
});
export type AdvisorRecord = z.infer<typeof AdvisorRecord>;

export const LockRecord = z.object({
  actionId: z.string(),
  holder: z.string(),
  expiresAt: z.number(),
});
export type LockRecord = z.infer<typeof LockRecord>;

export const WorkflowRecord = z.object({
  workflowId: z.string(),
  kind: z.enum(['boot', 'shutdown', 'failover', 'chaos']),
  status: z.enum(['running', 'done', 'failed', 'aborted']),
  input: z.unknown(),
  snapshot: z.unknown().optional(),
  output: z.unknown().optional(),
  startedAt: z.string(),
  updatedAt: z.string(),
});
export type WorkflowRecord = z.infer<typeof WorkflowRecord>;

export { Incident as IncidentRecord };

/** agents bucket: what an agent instance says about itself every heartbeat interval. `at` is the
 *  agent's clock; the KV entry's own timestamp is the server's, so the two give the clock skew. */
export const HeartbeatRecord = z.object({
  agent: z.string(),
  /** The fleet (manifest name) this agent works for: several fleets may share one NATS. */
  fleet: z.string().default(''),
  instance: z.string(),
  pid: z.number().int(),
  host: z.string(),
  status: z.enum(['running', 'stopped']),
  startedAt: z.string(),
  at: z.string(),
  intervalMs: z.number().int().positive(),
  /** Progress counters (messages handled, polling rounds, …): they move while the agent works. */
  counters: z.record(z.string(), z.number()).default({}),
  /** Agent-specific facts for the self-check (sensing: lastRoundAt, pveFailingSince, …). */
  detail: z.record(z.string(), z.unknown()).default({}),
  consumers: z.array(z.object({ stream: z.string(), durable: z.string(), pending: z.number(), ackPending: z.number() })).default([]),
  stalled: z.object({ kind: z.enum(['consumer', 'stuck', 'pve']), reason: z.string(), since: z.string() }).optional(),
});
export type HeartbeatRecord = z.infer<typeof HeartbeatRecord>;

/** fleet-state `silence.<id>` (`homeostat silence`): no notification about this guest or node
 *  (every guest on it) until `until`. Written by the decision agent; expired ones are ignored and
 *  swept. */
export const SilenceRecord = z.object({
  id: z.string().min(1).max(80),
  vmid: z.number().int().optional(),
  node: z.string().max(64).optional(),
  until: z.string(),
  by: z.string().max(120),
  reason: z.string().max(500).default(''),
  at: z.string(),
});
export type SilenceRecord = z.infer<typeof SilenceRecord>;

/** The silences in force at `now` (fleet-state), soonest to end first. */
export async function activeSilences(fleetState: KV, now = Date.now()): Promise<SilenceRecord[]> {
  const all = await kvList(fleetState, 'silence.', SilenceRecord);
  return [...all.values()].filter((s) => Date.parse(s.until) > now).sort((a, b) => a.until.localeCompare(b.until));
}

/** The silence covering a guest (by vmid or its node) or a node, if one is active at `now`. */
export function silenceFor(silences: Iterable<SilenceRecord>, target: { vmid?: number; node?: string }, now = Date.now()): SilenceRecord | undefined {
  for (const s of silences) {
    if (Date.parse(s.until) <= now) continue;
    if ((s.vmid !== undefined && s.vmid === target.vmid) || (s.node !== undefined && s.node === target.node)) return s;
  }
  return undefined;
}
