// Analysis tuning: the thresholds are the manifest's `policies.alerts`; the grouping windows are
// derived from the sense interval (what the loop can actually see) and may be overridden through
// the agent's options (tests).
import { token } from '../../bus/mod.ts';
import type { Gate } from '../../core/mod.ts';
import type { FleetStateSnapshot } from './model.ts';
import type { Fleet, Policies } from '../../fleet/manifest.ts';
import type { AgentContext } from '../runtime/agent.ts';

export interface Tuning {
  alerts: Policies['alerts'];
  /** A symptom incident opened this recently is folded into its root cause's incident. */
  groupWindowMs: number;
  /** After the root cause recovered, symptoms still failing this long get incidents of their own. */
  symptomGraceMs: number;
  /** A restarted guest may fail health checks while it boots; after this it counts as unhealthy. */
  bootGraceMs: number;
  /** No samples for this long: resource alerts of that guest/node resolve. */
  staleMetricsMs: number;
  tickMs: number;
  /** A guest handed back by a workflow is judged on sensing's next report, or after this. */
  evidenceGraceMs: number;
  /** How often the fleet-state KV is compared with what the analyzer holds (also after a reconnect). */
  reconcileMs: number;
  /** An agent without a heartbeat this long is down: a `self` incident. */
  agentDownMs: number;
  /** How often the agents bucket is read. */
  heartbeatCheckMs: number;
}

/** The agent's options: any tuning value, and the durable consumers' prefix. */
export interface AnalysisOptions extends Partial<Omit<Tuning, 'alerts'>> {
  /** Prefix of the durable consumer names (default analysis-<fleet name>). */
  durablePrefix?: string;
  /** Closed while this replica must not act (its singleton lease is paused: `homeostat agent`
   *  with replicas): incidents and alerts wait in the outbox; the state goes on being kept. */
  hold?: Gate;
  /** A standby's recent copy of fleet-state to start from (`homeostat agent` with replicas). */
  warm?: FleetStateSnapshot;
}

export function tuningFor(fleet: Fleet, overrides: AnalysisOptions = {}): Tuning {
  const p = fleet.policies;
  const sense = p.senseIntervalMs;
  return {
    alerts: p.alerts,
    groupWindowMs: overrides.groupWindowMs ?? Math.max(2000, 2 * sense),
    symptomGraceMs: overrides.symptomGraceMs ?? Math.max(5000, 5 * sense * p.alerts.healthFailures),
    bootGraceMs: overrides.bootGraceMs ?? p.guestBootTimeoutMs,
    staleMetricsMs: overrides.staleMetricsMs ?? Math.max(30_000, 10 * sense),
    tickMs: overrides.tickMs ?? 250,
    evidenceGraceMs: overrides.evidenceGraceMs ?? Math.max(1000, 3 * sense + p.probeTimeoutMs),
    reconcileMs: overrides.reconcileMs ?? Math.max(10_000, 10 * sense),
    agentDownMs: overrides.agentDownMs ?? 30_000,
    heartbeatCheckMs: overrides.heartbeatCheckMs ?? 5000,
  };
}

export function analysisOptions(ctx: AgentContext<AnalysisOptions>): { tuning: Tuning; durablePrefix: string; hold?: Gate; warm?: FleetStateSnapshot } {
  const o = ctx.options;
  return { tuning: tuningFor(ctx.fleet, o), durablePrefix: o.durablePrefix ?? `analysis-${token(ctx.fleet.name)}`, hold: o.hold, warm: o.warm };
}
