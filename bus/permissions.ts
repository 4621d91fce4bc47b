// Who may publish what on the bus: one identity per agent, `operator` for the CLI and the console,
// `admin` for `up`/`init` (streams and buckets). The embedded nats-server enforces these (see
// cli/nats-server.ts); docs/security.md shows the same for an existing NATS deployment.
import { BUCKETS, leaseStoreNames } from './jetstream.ts';

export const IDENTITIES = ['sensing', 'analysis', 'decision', 'action', 'workflows', 'notify', 'operator-agent', 'operator', 'admin'] as const;
export type IdentityName = (typeof IDENTITIES)[number];

export interface Permissions {
  publish: string[];
  subscribe: string[];
}

const kv = (bucket: string) => `$KV.${bucket}.>`;

/** Reading streams and buckets, and running consumers: every identity. JetStream's API is coarse:
 *  CONSUMER.> also lets an identity delete another's consumer (see docs/security.md). */
const JS_CLIENT = [
  '$JS.API.INFO', '$JS.API.STREAM.INFO.*', '$JS.API.STREAM.NAMES', '$JS.API.STREAM.LIST',
  '$JS.API.STREAM.MSG.GET.*', '$JS.API.DIRECT.GET.>', '$JS.API.CONSUMER.>', '$JS.ACK.>', '$JS.FC.>',
];
const COMMON = [...JS_CLIENT, 'fleet.dlq.>'];
/** An agent's heartbeat (its own keys in the agents bucket) and its AgentStalled/AgentRecovered events. */
const self = (agent: string) => [`$KV.${BUCKETS.agents}.${agent}.>`, `fleet.events.agent.${agent}`];

const OWN: Record<IdentityName, string[]> = {
  sensing: ['fleet.events.>', 'fleet.metrics.>', 'fleet.alerts.>', kv(BUCKETS.fleetState), ...leaseStoreNames(3).map(kv), ...self('sensing')],
  analysis: ['fleet.alerts.>', 'fleet.incidents.>', kv(BUCKETS.incidents), kv(BUCKETS.fleetState), ...self('analysis')],
  decision: [...self('decision'),
    'fleet.decisions.>', 'fleet.actions.approved', 'fleet.actions.requested', 'fleet.actions.denied',
    'fleet.incidents.>', 'fleet.cmd.failover', kv(BUCKETS.fleetState), kv(BUCKETS.incidents),
  ],
  action: [...self('action'), 'fleet.actions.started', 'fleet.actions.succeeded', 'fleet.actions.failed', 'fleet.actions.rejected', kv(BUCKETS.locks)],
  workflows: [...self('workflows'), 'fleet.workflows.>', 'fleet.propose.>', 'fleet.cmd.hold.clear', kv(BUCKETS.workflows), kv(BUCKETS.fleetState)],
  // notifications leave the bus over HTTP/SMTP; on it, the notify agent only keeps its own state
  notify: [kv(BUCKETS.notify), ...self('notify')],
  // the chat agent forwards confirmed chat commands to the decision and workflows agents
  'operator-agent': ['fleet.cmd.>', ...self('operator')],
  operator: ['fleet.cmd.>', 'fleet.chat'],
  admin: ['$JS.API.>'],
};

export function permissionsOf(name: IdentityName): Permissions {
  return {
    publish: name === 'admin' ? OWN.admin : [...COMMON, ...OWN[name]],
    // the max-deliveries advisories turn exhausted messages into dead letters (bus/consumers.ts)
    subscribe: ['fleet.>', '_INBOX.>', '$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>'],
  };
}

/** The identity an agent connects as (the operator agent is not the operator). */
export function identityOfAgent(agent: string): IdentityName {
  if (agent === 'operator') return 'operator-agent';
  if ((IDENTITIES as readonly string[]).includes(agent)) return agent as IdentityName;
  throw new Error(`no identity for agent ${agent}`);
}
