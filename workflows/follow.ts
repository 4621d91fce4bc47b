// Client side (CLI, tests, benches): start a workflow over `fleet.cmd.*`, then follow its events
// from the FLEET stream (replayed from just before the request, so nothing is missed) until the
// runner's WORKFLOW.ENDED. A watchdog asks the agent for the record now and then, so a lost event
// or an agent restart never leaves the follower hanging without saying why.
import { DeliverPolicy } from '@nats-io/jetstream';
import { HomeostatError, isHomeostatError } from '../core/mod.ts';
import { decode, FLEET_STREAM, patterns, subjects, WorkflowEvent, type Bus, type Envelope } from '../bus/mod.ts';
import type { GuestLine } from './plans.ts';
import type { WorkflowKind } from './deps.ts';
import { ENDED_EVENT, type WorkflowStatus } from './runner.ts';

export interface StartReply {
  workflowId: string;
  kind: WorkflowKind;
  startedAt: string;
  dryRun?: boolean;
  existing?: boolean;
  status?: WorkflowStatus;
  output?: unknown;
  guests?: GuestLine[];
  held?: { vmid: number; because: number[] }[];
  /** shutdown: protected guests (and what they depend on) left running; --include-protected to include them. */
  protectedKept?: number[];
  layer?: number;
  node?: string;
  fenceDelayMs?: number;
  experiment?: string;
  sloMs?: number;
}

export interface FollowedEvent {
  subject: string;
  env: Envelope<WorkflowEvent>;
}

export interface WorkflowResult {
  workflowId: string;
  kind: WorkflowKind;
  status: WorkflowStatus;
  output?: unknown;
}

export async function startWorkflow(bus: Bus, verb: string, args: Record<string, unknown>, requestedBy = 'cli'): Promise<{ reply: StartReply; requestedAt: Date }> {
  const requestedAt = new Date();
  const reply = await bus.request<StartReply>(subjects.cmd(verb), 'Command', { args, requestedBy }, 15_000);
  return { reply, requestedAt };
}

export async function workflowRecord(bus: Bus, workflowId: string, timeoutMs = 3000): Promise<WorkflowResult & { startedAt: string }> {
  return bus.request(subjects.cmd('workflow'), 'Command', { args: { workflowId } }, timeoutMs);
}

export interface FollowOptions {
  kind: WorkflowKind;
  workflowId: string;
  /** Replay from here (a little before the request, or the workflow's start). */
  since: Date;
  onEvent?: (ev: FollowedEvent) => void;
  /** Told once when the agent stops answering (it resumes the workflow when it comes back). */
  onSilence?: (message: string) => void;
  signal?: AbortSignal;
  watchdogMs?: number;
}

export async function followWorkflow(bus: Bus, o: FollowOptions): Promise<WorkflowResult> {
  const consumer = await bus.js.consumers.get(FLEET_STREAM, {
    filter_subjects: patterns.workflowsOf(o.kind, o.workflowId),
    deliver_policy: DeliverPolicy.StartTime,
    opt_start_time: new Date(o.since.getTime() - 2000).toISOString(),
  });
  const messages = await consumer.consume();
  let result: WorkflowResult | undefined;
  let silent = false;
  const stop = () => void messages.close();
  o.signal?.addEventListener('abort', stop, { once: true });
  // watchdog: the record says ended but no ENDED event came (or the agent is down)
  const watchdog = setInterval(() => {
    void workflowRecord(bus, o.workflowId).then(
      (r) => {
        silent = false;
        if (r.status !== 'running' && !result) {
          setTimeout(() => {
            if (result) return;
            result = { workflowId: o.workflowId, kind: o.kind, status: r.status, output: r.output };
            stop();
          }, 1500);
        }
      },
      (e: unknown) => {
        if (!silent && isHomeostatError(e, 'HOMEOSTAT_ERR_TIMEOUT')) o.onSilence?.(`the workflows agent does not answer; ${o.workflowId} resumes when it is back (Ctrl-C to stop following)`);
        silent = true;
      },
    );
  }, o.watchdogMs ?? 5000);
  try {
    for await (const m of messages) {
      const r = decode<WorkflowEvent>(m.subject, m.data, WorkflowEvent);
      if (!r.ok || r.env.data.workflowId !== o.workflowId) continue;
      o.onEvent?.({ subject: m.subject, env: r.env });
      if (r.env.data.event === ENDED_EVENT) {
        const d = r.env.data.detail as { status?: WorkflowStatus; output?: unknown };
        result = { workflowId: o.workflowId, kind: o.kind, status: d.status ?? 'failed', output: d.output };
        break;
      }
    }
  } finally {
    clearInterval(watchdog);
    o.signal?.removeEventListener('abort', stop);
    await messages.close().catch(() => undefined);
  }
  if (!result) throw new HomeostatError('HOMEOSTAT_ERR_TIMEOUT', `stopped following ${o.workflowId} before it ended; it keeps running (see \`homeostat events --subject 'fleet.workflows.>'\`)`);
  return result;
}

/** Start and follow to the end; what tests and benchmarks use. */
export async function runWorkflow(bus: Bus, verb: string, args: Record<string, unknown>, onEvent?: (ev: FollowedEvent) => void): Promise<WorkflowResult & { reply: StartReply }> {
  const { reply, requestedAt } = await startWorkflow(bus, verb, args, 'test');
  if (reply.dryRun) return { workflowId: reply.workflowId, kind: reply.kind, status: reply.status ?? 'done', output: reply.output, reply };
  const since = reply.existing ? new Date(Math.min(requestedAt.getTime(), Date.parse(reply.startedAt) || requestedAt.getTime())) : requestedAt;
  const r = await followWorkflow(bus, { kind: reply.kind, workflowId: reply.workflowId, since, onEvent });
  return { ...r, reply };
}
