// What the decision agent's parts share, passed in at start (no singletons).
import type { Logger } from '../../core/mod.ts';
import type { Bus, Signer } from '../../bus/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { AdvisorSeam } from './advisor.ts';
import type { DecisionStore } from './store.ts';

export interface DecisionContext {
  bus: Bus;
  log: Logger;
  fleet: Fleet;
  store: DecisionStore;
  advisor: AdvisorSeam;
  dryRun: boolean;
  /** How long the failover request may wait for the workflows agent. */
  failoverTimeoutMs: number;
  /** Seals every approved action; the action agent runs nothing else. */
  signer: Signer;
  /** How long a sealed action may wait to be started (then the action agent refuses it). */
  actionTtlMs: number;
  metrics?: Metrics;
}
