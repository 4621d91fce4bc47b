// Prometheus metrics: one registry per process, created by whoever starts the agents (cli/stack)
// and handed to each agent in its context. The catalogue below is the whole exported surface;
// deploy/ (rules, dashboard) and its tests read METRIC_NAMES, so a metric renamed here fails there.
//
// Labels stay bounded: kinds, verbs, outcomes, layers, states — never a vmid, incident id or
// free text (dead-letter reasons are reduced to their kind first).
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Seconds: from sub-second heals in the twin to minutes-long failovers on real hardware. */
const HEAL_BUCKETS = [0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600];
const FAST_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

// `aggregator`: how `up --replicas` merges one metric over the agent processes (cli/metrics-merge.ts);
// sum unless said: a state every replica reports alike (PVE reachable) is the max, not the sum.
function build(r: Registry) {
  const registers = [r];
  return {
    incidentsOpen: new Gauge({ name: 'homeostat_incidents_open', help: 'Open incidents by kind and severity', labelNames: ['kind', 'severity'] as const, registers }),
    incidents: new Counter({ name: 'homeostat_incidents_total', help: 'Incidents opened, by kind and severity', labelNames: ['kind', 'severity'] as const, registers }),
    actions: new Counter({ name: 'homeostat_actions_total', help: 'Actions that ended, by verb, proposer and outcome (succeeded|failed|denied)', labelNames: ['verb', 'proposer', 'outcome'] as const, registers }),
    remediation: new Histogram({ name: 'homeostat_remediation_seconds', help: 'Fault seen by sensing to root cause verified healthy again (incident resolved), by incident kind', labelNames: ['kind'] as const, buckets: HEAL_BUCKETS, registers }),
    detection: new Histogram({ name: 'homeostat_detection_seconds', help: 'Fault seen by sensing to incident opened, by incident kind', labelNames: ['kind'] as const, buckets: FAST_BUCKETS, registers }),
    decision: new Histogram({ name: 'homeostat_decision_seconds', help: 'Incident message received to the decision agent done with it (runbook, advisor, policy gate, publish)', buckets: FAST_BUCKETS, registers }),
    advisorRequests: new Counter({ name: 'homeostat_advisor_requests_total', help: 'LLM advisor consultations by outcome (proposal|passive|invalid|unavailable|timeout|error)', labelNames: ['outcome'] as const, registers }),
    advisorLatency: new Histogram({ name: 'homeostat_advisor_request_seconds', help: 'LLM advisor consultation latency by outcome', labelNames: ['outcome'] as const, buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60], registers }),
    advisorUp: new Gauge({ name: 'homeostat_advisor_up', help: '1 when the LLM advisor answered its last check or consultation, 0 when not (no advisor configured = 0)', aggregator: 'max', registers }),
    deadLetters: new Counter({ name: 'homeostat_dead_letters_total', help: 'Messages sent to fleet.dlq.>, by subject family and reason kind', labelNames: ['family', 'reason'] as const, registers }),
    guests: new Gauge({ name: 'homeostat_guests', help: 'Guests by state, health and layer, as sensing saw them last', labelNames: ['state', 'health', 'layer'] as const, registers }),
    pveUp: new Gauge({ name: 'homeostat_pve_up', help: '1 when the last polling round reached the PVE API, 0 when not', aggregator: 'max', registers }),
    pveRequests: new Counter({ name: 'homeostat_pve_requests_total', help: 'PVE API requests (each attempt) by method and HTTP status (error = no answer)', labelNames: ['method', 'status'] as const, registers }),
    pveLatency: new Histogram({ name: 'homeostat_pve_request_seconds', help: 'PVE API request latency (each attempt) by method', labelNames: ['method'] as const, buckets: FAST_BUCKETS, registers }),
    workflows: new Counter({ name: 'homeostat_workflows_total', help: 'Workflows that ended, by kind (boot|shutdown|failover|chaos) and result', labelNames: ['kind', 'result'] as const, registers }),
    approvalsPending: new Gauge({ name: 'homeostat_approvals_pending', help: 'Actions waiting for an operator approval', aggregator: 'max', registers }),
    notifications: new Counter({ name: 'homeostat_notifications_total', help: 'Notification delivery attempts by notifier kind (webhook|ntfy|slack|smtp) and outcome (sent|failed|gave_up)', labelNames: ['notifier', 'outcome'] as const, registers }),
    flapHolds: new Counter({ name: 'homeostat_flap_holds_total', help: 'Flap hold-downs placed (a guest restarted too often: homeostat stopped acting on it)', registers }),
  };
}

export type Metrics = ReturnType<typeof build> & { readonly registry: Registry };

/** A registry with every homeostat metric and (unless `defaults: false`) Node's process metrics. */
export function createMetrics(opts: { defaults?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (opts.defaults !== false) collectDefaultMetrics({ register: registry });
  return Object.assign(build(registry), { registry });
}

/** Every metric name homeostat itself exports (without the _bucket/_sum/_count suffixes). */
export const METRIC_NAMES: readonly string[] = (() => {
  const r = new Registry();
  build(r);
  return r.getMetricsAsArray().map((m) => m.name);
})();
