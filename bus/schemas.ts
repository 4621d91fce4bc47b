// One zod schema per subject family. Schemas are the types: no hand-written twins.
import { z } from 'zod';

const Vmid = z.number().int().min(100).max(999_999_999);
const NodeName = z.string().min(1).max(64);
const Text = z.string().max(2000);
const Iso = z.string().datetime({ offset: true });

export const GuestState = z.enum(['running', 'stopped', 'paused', 'unknown']);
export type GuestState = z.infer<typeof GuestState>;
export const Health = z.enum(['healthy', 'unhealthy', 'unknown']);
export type Health = z.infer<typeof Health>;
export const NodeStatus = z.enum(['online', 'offline', 'unknown']);
export type NodeStatus = z.infer<typeof NodeStatus>;

export const GuestRef = z.object({ vmid: Vmid, node: NodeName, name: z.string().max(200).optional() });
export type GuestRef = z.infer<typeof GuestRef>;

export const Resources = z.object({
  cpu: z.number().min(0).max(1000).optional(),
  mem: z.number().min(0).optional(),
  maxmem: z.number().min(0).optional(),
  disk: z.number().min(0).optional(),
  maxdisk: z.number().min(0).optional(),
  uptime: z.number().min(0).optional(),
});
export type Resources = z.infer<typeof Resources>;

/** fleet.events.guest.<node>.<vmid> — types: GuestStateChanged, GuestProbe, GuestDiscovered */
export const GuestEvent = GuestRef.extend({
  state: GuestState,
  previousState: GuestState.optional(),
  health: Health,
  previousHealth: Health.optional(),
  reason: Text.optional(),
  resources: Resources.optional(),
  certDaysLeft: z.number().optional(),
  /** Running but still booting (not yet healthy since its start, within the boot grace). */
  booting: z.boolean().optional(),
});
export type GuestEvent = z.infer<typeof GuestEvent>;

/** fleet.events.node.<node> — types: NodeUp, NodeDown, NodeUnreachable, NodePressure */
export const NodeEvent = z.object({
  node: NodeName,
  status: NodeStatus,
  previousStatus: NodeStatus.optional(),
  reachable: z.boolean(),
  reason: Text.optional(),
  resources: Resources.optional(),
});
export type NodeEvent = z.infer<typeof NodeEvent>;

/** fleet.events.api — types: PveUnavailable, PveAvailable */
export const ApiEvent = z.object({
  available: z.boolean(),
  code: z.string().max(80).optional(),
  reason: Text.optional(),
  since: Iso.optional(),
});
export type ApiEvent = z.infer<typeof ApiEvent>;

/** fleet.events.agent.<agent> — types: AgentStalled, AgentRecovered. An agent that stops making
 *  progress says so (`consumer`: a durable has messages waiting and does not move; `stuck`: its own
 *  loop did not complete; `pve`: sensing's polls keep failing). */
export const AgentEvent = z.object({
  agent: z.string().min(1).max(40),
  instance: z.string().min(1).max(120),
  kind: z.enum(['consumer', 'stuck', 'pve']),
  reason: Text,
  since: Iso,
});
export type AgentEvent = z.infer<typeof AgentEvent>;

/** fleet.metrics.<node>.<vmid|node> — core NATS only */
export const MetricSample = z.object({
  node: NodeName,
  vmid: Vmid.optional(),
  cpu: z.number().min(0),
  mem: z.number().min(0),
  maxmem: z.number().min(0),
  disk: z.number().min(0),
  maxdisk: z.number().min(0),
});
export type MetricSample = z.infer<typeof MetricSample>;

export const AlertName = z.enum([
  'NodeDown', 'DiskFull', 'HighCPU', 'HighMemory', 'CertExpiring', 'GuestDown', 'HealthCheckFailed', 'PveUnavailable', 'External',
]);
export type AlertName = z.infer<typeof AlertName>;
export const Severity = z.enum(['critical', 'warning', 'info']);

/** fleet.alerts.<name> — types: AlertFired, AlertResolved */
export const Alert = z.object({
  name: z.string().min(1).max(120),
  status: z.enum(['firing', 'resolved']),
  severity: Severity,
  fingerprint: z.string().min(1).max(200),
  node: NodeName.optional(),
  vmid: Vmid.optional(),
  summary: Text,
  startsAt: Iso,
  endsAt: Iso.optional(),
  origin: z.enum(['analysis', 'alertmanager']),
  labels: z.record(z.string().max(200), z.string().max(1000)).default({}),
});
export type Alert = z.infer<typeof Alert>;

/** `self`: homeostat itself cannot do its job (an agent down or stalled). */
export const IncidentKind = z.enum(['guest', 'node', 'flapping', 'resource', 'external', 'api', 'self']);
export const TimelineEntry = z.object({
  ts: Iso,
  what: Text,
  ref: z.string().max(200).optional(),
});
export type TimelineEntry = z.infer<typeof TimelineEntry>;

/** fleet.incidents.<id>.<opened|updated|resolved> — types: IncidentOpened, IncidentUpdated, IncidentResolved */
export const Incident = z.object({
  id: z.string().min(1).max(80),
  kind: IncidentKind,
  status: z.enum(['open', 'resolved']),
  severity: Severity,
  title: Text,
  rootCause: z.object({
    node: NodeName.optional(),
    vmid: Vmid.optional(),
    name: z.string().max(200).optional(),
    reason: Text,
    alert: z.string().max(120).optional(),
  }),
  symptoms: z.array(GuestRef.extend({ reason: Text })).max(10_000).default([]),
  suppressed: z.array(GuestRef).max(10_000).default([]),
  openedAt: Iso,
  updatedAt: Iso,
  resolvedAt: Iso.optional(),
  timeline: z.array(TimelineEntry).max(500).default([]),
  /** `homeostat ack`: a person has it; notifications about it are not repeated. */
  acknowledged: z.object({ by: z.string().max(120), at: Iso, note: Text.optional() }).optional(),
});
export type Incident = z.infer<typeof Incident>;

export const ActionVerb = z.enum(['start', 'stop', 'shutdown', 'reboot', 'migrate', 'rollback']);
export type ActionVerb = z.infer<typeof ActionVerb>;
export const Proposer = z.enum(['runbook', 'llm', 'operator', 'workflow', 'chaos']);
export type Proposer = z.infer<typeof Proposer>;
export const Verdict = z.enum(['allow', 'needs-approval', 'deny', 'dry-run', 'notify', 'hold']);
export type Verdict = z.infer<typeof Verdict>;

/** fleet.decisions.<incidentId> — type: DecisionMade */
export const Decision = z.object({
  incidentId: z.string().min(1).max(80),
  actionId: z.string().max(80).optional(),
  verb: z.union([ActionVerb, z.enum(['notify', 'failover', 'none'])]),
  target: z.object({ vmid: Vmid.optional(), node: NodeName.optional() }),
  proposer: Proposer,
  rationale: Text,
  verdict: Verdict,
  reasons: z.array(Text).max(50).default([]),
  advisor: z.object({ used: z.boolean(), discarded: Text.optional(), confidence: z.number().min(0).max(1).optional() }).optional(),
});
export type Decision = z.infer<typeof Decision>;

/** fleet.actions.<phase> — types: ActionRequested, ActionApproved, ActionDenied, ActionStarted, ActionSucceeded, ActionFailed */
export const Action = z.object({
  actionId: z.string().min(1).max(80),
  verb: ActionVerb,
  target: GuestRef,
  params: z.object({
    targetNode: NodeName.optional(),
    snapname: z.string().max(40).optional(),
    timeoutSec: z.number().int().positive().max(3600).optional(),
  }).default({}),
  incidentId: z.string().max(80).optional(),
  workflowId: z.string().max(80).optional(),
  proposer: Proposer,
  requestedBy: z.string().max(120),
  rationale: Text.optional(),
  needsApproval: z.boolean().default(false),
  /** `key`: the operator's public key that signed the approval (absent for the gate's own denials). */
  approval: z.object({ by: z.string().max(120), at: Iso, approved: z.boolean(), reason: Text.optional(), key: z.string().max(64).optional() }).optional(),
  /** The decision agent's ed25519 signature (bus/seal.ts): `by` its public key, `exp` ms epoch. */
  seal: z.object({ by: z.string().min(1).max(64), exp: z.number().int(), sig: z.string().min(1).max(200) }).optional(),
  attempt: z.number().int().min(0).max(100).optional(),
  upid: z.string().max(300).optional(),
  error: z.object({ code: z.string().max(80), message: Text }).optional(),
  verified: z.boolean().optional(),
});
export type Action = z.infer<typeof Action>;

/** fleet.propose.action — a workflow's or chaos experiment's action, for the decision agent to gate */
export const ActionProposal = z.object({
  action: Action.pick({ actionId: true, verb: true, target: true, params: true, rationale: true, attempt: true, incidentId: true }).extend({ workflowId: z.string().min(1).max(80) }),
  proposer: z.enum(['workflow', 'chaos']),
  /** A graceful shutdown of this guest already failed (the shutdown workflow's hard stop). */
  hung: z.boolean().default(false),
});
export type ActionProposal = z.infer<typeof ActionProposal>;

/** fleet.propose.fence — a failover workflow asks to fence the node it fails over */
export const FenceProposal = z.object({ workflowId: z.string().min(1).max(80), node: NodeName });
export type FenceProposal = z.infer<typeof FenceProposal>;

/** The decision agent's answer to a proposal (and to an operator action). */
export const ProposalVerdict = z.object({
  verdict: Verdict,
  reasons: z.array(Text).max(50).default([]),
  actionId: z.string().max(80).optional(),
  retryAt: z.number().optional(),
});
export type ProposalVerdict = z.infer<typeof ProposalVerdict>;

/** fleet.workflows.<kind>.<id>.<EVENT> — the machine's own event names */
export const WorkflowEvent = z.object({
  workflowId: z.string().min(1).max(80),
  kind: z.enum(['boot', 'shutdown', 'failover', 'chaos']),
  event: z.string().min(1).max(80),
  state: z.string().max(500).optional(),
  vmid: Vmid.optional(),
  node: NodeName.optional(),
  layer: z.number().int().optional(),
  detail: z.record(z.string(), z.unknown()).default({}),
});
export type WorkflowEvent = z.infer<typeof WorkflowEvent>;

/** fleet.cmd.<verb> request */
export const CommandRequest = z.object({
  args: z.record(z.string(), z.unknown()).default({}),
  requestedBy: z.string().max(120).default('cli'),
});
export type CommandRequest = z.infer<typeof CommandRequest>;

/** reply to fleet.cmd.<verb> and fleet.chat */
export const CommandReply = z.object({
  ok: z.boolean(),
  result: z.unknown().optional(),
  error: z.object({ code: z.string().max(80), message: Text }).optional(),
});
export type CommandReply = z.infer<typeof CommandReply>;

/** fleet.chat request */
export const ChatRequest = z.object({
  question: z.string().min(1).max(4000),
  sessionId: z.string().max(80).optional(),
  requestedBy: z.string().max(120).default('chat'),
  confirm: z.boolean().default(false),
});
export type ChatRequest = z.infer<typeof ChatRequest>;

export const ChatAnswer = z.object({
  answer: z.string().max(20_000),
  intent: z.string().max(80),
  citations: z.array(z.string().max(120)).max(100).default([]),
  usedModel: z.boolean(),
  advisorAvailable: z.boolean().optional(),
  needsConfirmation: z.boolean().default(false),
  data: z.unknown().optional(),
});
export type ChatAnswer = z.infer<typeof ChatAnswer>;

/** fleet.dlq.<original subject> — type: DeadLetter */
export const DeadLetter = z.object({
  subject: z.string(),
  reason: Text,
  raw: z.string().max(4096),
  size: z.number().int().min(0),
  truncated: z.boolean(),
  receivedBy: z.string().max(120),
});
export type DeadLetter = z.infer<typeof DeadLetter>;

export const Envelope = z.object({
  id: z.string().min(1).max(80),
  ts: Iso,
  source: z.string().min(1).max(120),
  type: z.string().min(1).max(80),
  correlationId: z.string().min(1).max(80),
  causationId: z.string().max(80).optional(),
  data: z.unknown(),
});
export type Envelope<T = unknown> = Omit<z.infer<typeof Envelope>, 'data'> & { data: T };
