// Runs the machines: creates or restores an actor, persists its snapshot in the `workflows` KV
// bucket (coalescing writes, so a 1,000-guest boot does not write on every transition), publishes
// progress on `fleet.workflows.<kind>.<id>.<EVENT>`, and records the end (done / failed / aborted
// with the output). A record still `running` when the agent starts is restored and sent RESUME.
import { createActor, type AnyActorRef, type AnyStateMachine } from 'xstate';
import { kvGet, kvKeys, kvPut, orderedConsumer, subjects, WorkflowEvent, WorkflowRecord, type Bus } from '../bus/mod.ts';
import { errorText, type Progress } from '../state-machines/mod.ts';
import { type AppLogger, sleep } from '../core/mod.ts';
import { WORKFLOW_KINDS, type RunContext, type WorkflowKind } from './deps.ts';

export type WorkflowStatus = WorkflowRecord['status'];
/** Published by the runner (not a machine) once a workflow has ended, with its status and output. */
export const ENDED_EVENT = 'WORKFLOW.ENDED';
const BIG_SNAPSHOT = 100_000;
/** Longest pause between two snapshot writes of a big workflow. */
const SNAPSHOT_PAUSE_MAX_MS = 2000;
/** Messages carry at most 256 KiB; a 5,000-guest summary's per-guest `reasons` alone are ~300 kB. */
const MESSAGE_BUDGET = 200_000;

/** What of a workflow's output (or an event's detail holding it) fits in one message: a too-big one
 *  loses its per-guest `reasons` and its `plan`, which stay in the workflow's KV record. */
export function fitForMessage<T>(x: T): T {
  if (x === null || typeof x !== 'object' || JSON.stringify(x).length <= MESSAGE_BUDGET) return x;
  const trim = (o: Record<string, unknown>) => {
    const { reasons: _r, plan: _p, ...rest } = o;
    return { ...rest, omitted: 'reasons and plan: too big for one message (they are in the workflow record in KV)' };
  };
  const o = x as Record<string, unknown>;
  return (o.output !== null && typeof o.output === 'object' ? { ...o, output: trim(o.output as Record<string, unknown>) } : trim(o)) as T;
}
const encoder = new TextEncoder();

export interface RunnerOptions {
  bus: Bus;
  log: AppLogger;
  /** The machine for one run, with its actors and `emitProgress` bound. */
  build(run: RunContext, emit: (p: Progress) => void): AnyStateMachine;
  /** How a finished machine's output maps to a record status. */
  statusOf(kind: WorkflowKind, output: unknown, stored: unknown): WorkflowStatus;
  /** Called once a workflow ended (cleanup such as maintenance flags). */
  onEnd?(run: RunContext, status: WorkflowStatus): Promise<void>;
}

interface Running {
  run: RunContext;
  actor: AnyActorRef;
  base: Omit<WorkflowRecord, 'status' | 'snapshot' | 'output' | 'updatedAt'>;
  dirty: boolean;
  writing?: Promise<void>;
  closed: boolean;
  ended: Promise<WorkflowRecord>;
  unsubscribe(): void;
}

export class WorkflowRunner {
  private readonly running = new Map<string, Running>();
  private readonly publishQueues = new Map<string, Promise<void>>();
  private stopping = false;

  constructor(private readonly o: RunnerOptions) {}

  /** Workflows this runner is driving now. */
  active(): RunContext[] {
    return [...this.running.values()].map((r) => r.run);
  }

  /** Start a new workflow. Resolves once the actor runs (a dry run may already be done). */
  async launch(p: { run: RunContext; input: unknown; stored: Record<string, unknown> }): Promise<{ ended: Promise<WorkflowRecord> }> {
    const startedAt = new Date().toISOString();
    return this.drive(p.run, { workflowId: p.run.workflowId, kind: p.run.kind, input: { ...p.stored, correlationId: p.run.correlationId }, startedAt }, (m) => createActor(m, { input: p.input }));
  }

  /** Send an event to a running workflow's machine (e.g. NODE.REACHABLE). */
  send(workflowId: string, event: { type: string }): boolean {
    const r = this.running.get(workflowId);
    if (!r || r.closed) return false;
    r.actor.send(event);
    return true;
  }

  /** Restore every record still marked running (after a crash or a restart of the agent). */
  async resumeAll(): Promise<string[]> {
    const kv = this.o.bus.kv.workflows;
    const keys: string[] = [];
    for await (const k of await orderedConsumer(() => kv.keys(), 'a key listing of workflows')) if (!k.startsWith('fx.')) keys.push(k);
    const out: string[] = [];
    for (const key of keys) {
      const rec = (await kvGet(kv, key, WorkflowRecord))?.value;
      if (!rec || rec.status !== 'running' || this.running.has(rec.workflowId)) continue;
      const stored = (rec.input ?? {}) as { correlationId?: string; args?: { incidentId?: string } };
      const run: RunContext = { kind: rec.kind, workflowId: rec.workflowId, correlationId: stored.correlationId ?? rec.workflowId, ...(stored.args?.incidentId ? { incidentId: stored.args.incidentId } : {}) };
      try {
        if (!rec.snapshot) throw new Error('no snapshot stored');
        await this.drive(run, { workflowId: rec.workflowId, kind: rec.kind, input: rec.input, startedAt: rec.startedAt }, (m) => createActor(m, { snapshot: rec.snapshot as never, input: {} as never }), true);
        out.push(rec.workflowId);
        this.o.log.info({ workflowId: rec.workflowId, kind: rec.kind }, 'workflow resumed from its persisted snapshot');
      } catch (e) {
        this.o.log.error({ workflowId: rec.workflowId, err: errorText(e) }, 'could not resume workflow');
        await kvPut(kv, key, { ...rec, status: 'failed', output: { error: `could not resume: ${errorText(e)}` }, updatedAt: new Date().toISOString() });
        this.running.delete(rec.workflowId);
        await this.o.onEnd?.(run, 'failed').catch(() => undefined);
        this.publish(run, { event: ENDED_EVENT, detail: { status: 'failed', error: `could not resume: ${errorText(e)}` } });
      }
    }
    return out;
  }

  /** Forget ended workflows (and their chaos markers) older than `maxAgeMs`; their events stay in the stream. */
  async prune(maxAgeMs: number): Promise<number> {
    const kv = this.o.bus.kv.workflows;
    const keys: string[] = [];
    for await (const k of await orderedConsumer(() => kv.keys(), 'a key listing of workflows')) if (!k.startsWith('fx.')) keys.push(k);
    let n = 0;
    for (const key of keys) {
      const rec = (await kvGet(kv, key, WorkflowRecord))?.value;
      if (!rec || rec.status === 'running' || Date.now() - Date.parse(rec.updatedAt) < maxAgeMs) continue;
      await kv.purge(key);
      await kv.purge(`fx.${key}`).catch(() => undefined);
      n++;
    }
    return n;
  }

  private async drive(run: RunContext, base: Running['base'], make: (m: AnyStateMachine) => AnyActorRef, resumed = false): Promise<{ ended: Promise<WorkflowRecord> }> {
    const machine = this.o.build(run, (p) => this.publish(run, p));
    const actor = make(machine);
    let finish!: (r: WorkflowRecord) => void;
    const r: Running = { run, actor, base, dirty: false, closed: false, ended: new Promise((res) => (finish = res)), unsubscribe: () => undefined };
    this.running.set(run.workflowId, r);
    let ending = false;
    const end = (status: WorkflowStatus, output: unknown) => {
      if (ending) return;
      ending = true;
      void this.finish(r, status, output).then(finish, (e: unknown) => {
        this.o.log.error({ workflowId: run.workflowId, err: errorText(e) }, 'could not record the end of a workflow');
        finish({ ...r.base, status, output, updatedAt: new Date().toISOString() });
      });
    };
    const sub = actor.subscribe({
      next: (snap: { status: string; output?: unknown; error?: unknown }) => {
        if (snap.status === 'done') end(this.o.statusOf(run.kind, snap.output, base.input), snap.output);
        else if (snap.status === 'error') end('failed', { error: errorText(snap.error) });
        else this.poke(r);
      },
      error: (err: unknown) => end('failed', { error: errorText(err) }),
    });
    r.unsubscribe = () => sub.unsubscribe();
    actor.start();
    if (resumed) actor.send({ type: 'RESUME' });
    const snap = actor.getSnapshot() as { status: string; output?: unknown };
    if (snap.status === 'done') end(this.o.statusOf(run.kind, snap.output, base.input), snap.output);
    else this.poke(r);
    return { ended: r.ended };
  }

  private poke(r: Running): void {
    if (r.closed) return;
    r.dirty = true;
    r.writing ??= this.writeLoop(r).finally(() => (r.writing = undefined));
  }

  private async writeLoop(r: Running): Promise<void> {
    while (r.dirty && !r.closed) {
      r.dirty = false;
      let size = 0;
      let cpuMs = 0;
      try {
        const t0 = performance.now();
        const snapshot = r.actor.getPersistedSnapshot();
        const rec: WorkflowRecord = { ...r.base, status: 'running', snapshot, updatedAt: new Date().toISOString() };
        const bytes = encoder.encode(JSON.stringify(rec));
        cpuMs = performance.now() - t0;
        size = bytes.length;
        await this.o.bus.kv.workflows.put(kvKeys.workflow(r.run.workflowId), bytes);
      } catch (e) {
        this.o.log.error({ workflowId: r.run.workflowId, err: errorText(e) }, 'could not persist workflow snapshot');
      }
      // big fleets: coalesce transitions instead of writing hundreds of KB per transition, and
      // keep the snapshotting itself (synchronous: it holds up every agent of this process) to
      // about a twentieth of the time. A resume from an older snapshot re-sends its steps in flight,
      // with the same idempotent action ids: the same outcome, a little more asking. (A tenth
      // was still ~6 % of a 5,000-guest boot's CPU, bench/boot.ts.)
      if (size > BIG_SNAPSHOT) await sleep(Math.min(SNAPSHOT_PAUSE_MAX_MS, Math.max(100, 20 * cpuMs)));
    }
  }

  private async flush(r: Running): Promise<void> {
    while (r.writing) await r.writing;
  }

  private async finish(r: Running, status: WorkflowStatus, output: unknown): Promise<WorkflowRecord> {
    r.closed = true;
    r.unsubscribe();
    await this.flush(r);
    const rec: WorkflowRecord = { ...r.base, status, output, updatedAt: new Date().toISOString() };
    await kvPut(this.o.bus.kv.workflows, kvKeys.workflow(r.run.workflowId), rec);
    this.running.delete(r.run.workflowId);
    await this.o.onEnd?.(r.run, status).catch((e: unknown) => this.o.log.warn({ workflowId: r.run.workflowId, err: errorText(e) }, 'workflow cleanup failed'));
    this.publish(r.run, { event: ENDED_EVENT, detail: { status, output } });
    await this.publishQueues.get(r.run.workflowId);
    this.publishQueues.delete(r.run.workflowId);
    this.o.log.info({ workflowId: r.run.workflowId, kind: r.run.kind, status }, 'workflow ended');
    return rec;
  }

  /** Fire-and-forget, but in order per workflow; a failure is logged, never thrown at the machine. */
  private publish(run: RunContext, p: Progress): void {
    const data: WorkflowEvent = {
      workflowId: run.workflowId, kind: run.kind, event: p.event,
      ...(p.vmid !== undefined ? { vmid: p.vmid } : {}),
      ...(p.node !== undefined ? { node: p.node } : {}),
      ...(p.layer !== undefined ? { layer: p.layer } : {}),
      detail: fitForMessage(p.detail ?? {}),
    };
    const prev = this.publishQueues.get(run.workflowId) ?? Promise.resolve();
    const next = prev.then(() => this.o.bus.publish(subjects.workflow(run.kind, run.workflowId, p.event), 'WorkflowEvent', data, { correlationId: run.correlationId }))
      .then(() => undefined, (e: unknown) => {
        if (!this.stopping) this.o.log.warn({ workflowId: run.workflowId, event: p.event, err: errorText(e) }, 'could not publish workflow progress');
      });
    this.publishQueues.set(run.workflowId, next);
  }

  /** Stop driving (agent shutdown): persist the latest snapshots as `running` so they resume. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const r of this.running.values()) {
      r.unsubscribe();
      await this.flush(r);
      if (!r.closed) {
        r.closed = true;
        try {
          const rec: WorkflowRecord = { ...r.base, status: 'running', snapshot: r.actor.getPersistedSnapshot(), updatedAt: new Date().toISOString() };
          await kvPut(this.o.bus.kv.workflows, kvKeys.workflow(r.run.workflowId), rec);
        } catch (e) {
          this.o.log.error({ workflowId: r.run.workflowId, err: errorText(e) }, 'could not persist workflow before stopping');
        }
      }
      r.actor.stop();
    }
    this.running.clear();
    await Promise.all([...this.publishQueues.values()]);
  }
}

export const isWorkflowKind = (k: string): k is WorkflowKind => (WORKFLOW_KINDS as readonly string[]).includes(k);
