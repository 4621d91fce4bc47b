// What sensing works with: the fleet's policies, how to reach PVE, and the options its caller set.
import type { AgentContext } from '../runtime/agent.ts';

/** What the caller (the stack, `homeostat agent`, tests) may set. */
export interface SensingAgentOptions {
  /** Alertmanager webhook receiver: absent = do not listen; 0 = any free port. */
  alertmanagerPort?: number;
  /** Default 127.0.0.1. */
  alertmanagerHost?: string;
  /** Bearer token PVE hookscripts must send to /pve/hook on the same receiver; falls back to HOMEOSTAT_HOOK_TOKEN. */
  hookToken?: string;
  /** Replicated (`up --replicas`): this replica's name; the nodes are divided between the live
   *  replicas through leases in KV (partition.ts). Absent: this process polls every node. */
  partitionHolder?: string;
}

export interface SensingOptions {
  intervalMs: number;
  probeTimeoutMs: number;
  probeConcurrency: number;
  healthFailures: number;
  /** A guest that runs but is not healthy yet since its start is booting for this long (policies.guestBootTimeoutMs). */
  bootGraceMs: number;
  /** A node whose listing is still in flight after this long is left for a later round. */
  roundDeadlineMs: number;
  /** Unchanged guest records are rewritten in KV (fresh resources) at most this often. */
  kvRefreshMs: number;
  alertmanagerPort?: number;
  alertmanagerHost: string;
  partitionHolder?: string;
  pveUrl?: string;
  tokenId?: string;
  tokenSecret?: string;
  caPem?: string;
  insecure: boolean;
  hookToken?: string;
}

export function sensingOptions(ctx: AgentContext<SensingAgentOptions>): SensingOptions {
  const p = ctx.fleet.policies;
  const o = ctx.options;
  const a = ctx.pveAccess;
  return {
    intervalMs: p.senseIntervalMs,
    probeTimeoutMs: p.probeTimeoutMs,
    probeConcurrency: p.probeConcurrency,
    healthFailures: p.alerts.healthFailures,
    bootGraceMs: p.guestBootTimeoutMs,
    roundDeadlineMs: Math.max(2 * p.senseIntervalMs, p.probeTimeoutMs, 1000),
    kvRefreshMs: Math.max(10 * p.senseIntervalMs, 5000),
    alertmanagerPort: o.alertmanagerPort,
    alertmanagerHost: o.alertmanagerHost ?? '127.0.0.1',
    partitionHolder: o.partitionHolder,
    pveUrl: a?.url,
    tokenId: a?.tokenId,
    tokenSecret: a?.tokenSecret,
    caPem: a?.caPem,
    insecure: a?.insecure ?? false,
    hookToken: o.hookToken ?? ctx.config.HOMEOSTAT_HOOK_TOKEN,
  };
}
