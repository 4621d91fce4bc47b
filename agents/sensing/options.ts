// What sensing reads from ctx: the fleet's policies and the optional services the stack passes.
// Parsed once, by zod, at start; a bad value stops the agent with one clear line.
import { z } from 'zod';
import { parseServices, type AgentContext } from '../runtime/agent.ts';

export const SensingServices = z.object({
  /** PEM the simulator's self-signed certificate (or the PVE CA) is trusted with for /sim/health probes. */
  pveCaPem: z.string().includes('-----BEGIN CERTIFICATE-----', { message: 'expected a PEM certificate' }).optional(),
  /** The token the PVE client uses; the simulator's /sim/* endpoints want it too. Falls back to config. */
  pveTokenId: z.string().min(1).optional(),
  pveTokenSecret: z.string().min(1).optional(),
  /** Skip TLS verification of the PVE endpoint (PVE_INSECURE=1); falls back to config. */
  pveInsecure: z.boolean().optional(),
  /** Alertmanager webhook receiver: absent = do not listen; 0 = any free port. */
  alertmanagerPort: z.number().int().min(0).max(65_535).optional(),
  alertmanagerHost: z.string().min(1).default('127.0.0.1'),
  /** Bearer token PVE hookscripts must send to /pve/hook on the same receiver; falls back to HOMEOSTAT_HOOK_TOKEN. */
  hookToken: z.string().min(16).optional(),
  /** Replicated (`up --replicas`): this replica's name; the nodes are divided between the live
   *  replicas through leases in KV (partition.ts). Absent: this process polls every node. */
  partitionHolder: z.string().min(1).max(200).optional(),
}).passthrough();
export type SensingServices = z.infer<typeof SensingServices>;

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
  services: SensingServices;
  pveUrl?: string;
  tokenId?: string;
  tokenSecret?: string;
  caPem?: string;
  insecure: boolean;
  hookToken?: string;
}

export function sensingOptions(ctx: AgentContext): SensingOptions {
  const services = parseServices(SensingServices, ctx.services);
  const p = ctx.fleet.policies;
  const s = services;
  return {
    intervalMs: p.senseIntervalMs,
    probeTimeoutMs: p.probeTimeoutMs,
    probeConcurrency: p.probeConcurrency,
    healthFailures: p.alerts.healthFailures,
    bootGraceMs: p.guestBootTimeoutMs,
    roundDeadlineMs: Math.max(2 * p.senseIntervalMs, p.probeTimeoutMs, 1000),
    kvRefreshMs: Math.max(10 * p.senseIntervalMs, 5000),
    services: s,
    pveUrl: ctx.pveUrl,
    tokenId: s.pveTokenId ?? ctx.config.PVE_TOKEN_ID,
    tokenSecret: s.pveTokenSecret ?? ctx.config.PVE_TOKEN_SECRET,
    caPem: s.pveCaPem ?? ctx.config.pveCaPem,
    insecure: s.pveInsecure ?? ctx.config.PVE_INSECURE,
    hookToken: s.hookToken ?? ctx.config.HOMEOSTAT_HOOK_TOKEN,
  };
}
