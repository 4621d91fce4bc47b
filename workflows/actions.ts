// Workflows act only through the decision agent and the action agent: propose the action (with the
// machine's stable actionId) to the decision agent over `fleet.propose.action`, whose policy gate
// allows, holds, asks an operator, or refuses it, and which alone publishes (signed) what it allows;
// then wait for the action agent's ActionStarted / ActionSucceeded / ActionFailed with that id. One live subscription serves every waiter; after a restart the
// tracker is first filled from the stream, so an action already approved is never published again
// and one already finished is answered from history instead of being repeated.
import { Action, replayStored, subjects, type ActionProposal, type Bus, type Envelope, type ProposalVerdict, type Stoppable, type WorkflowEvent } from '../bus/mod.ts';

const WORKFLOW_KINDS = ['boot', 'shutdown', 'failover', 'chaos'] as const;
import { sleep, type AppLogger } from '../core/mod.ts';

export type ActionSpec = Pick<Action, 'actionId' | 'verb' | 'target'> & Partial<Pick<Action, 'params' | 'rationale' | 'attempt' | 'incidentId'>> & {
  workflowId: string;
  proposer?: 'workflow' | 'chaos';
  /** A graceful shutdown of the guest already failed (the hard stop that follows it). */
  hung?: boolean;
};

type Phase = 'approved' | 'started' | 'succeeded' | 'failed' | 'denied';
const RANK: Record<Phase, number> = { approved: 0, started: 1, succeeded: 2, failed: 2, denied: 2 };
const TYPE_PHASE: Record<string, Phase> = {
  ActionApproved: 'approved', ActionStarted: 'started', ActionSucceeded: 'succeeded', ActionFailed: 'failed', ActionDenied: 'denied', ActionRejected: 'failed',
};

export interface ActionState {
  phase: Phase;
  action: Action;
  at: number;
}

/** A failed or denied action, with the action agent's error code when it gave one. */
export class ActionFailedError extends Error {
  readonly code: string;
  constructor(readonly action: Action, phase: Phase) {
    const code = action.error?.code ?? (phase === 'denied' ? 'HOMEOSTAT_ERR_POLICY_DENIED' : 'HOMEOSTAT_ERR_WORKFLOW');
    super(`${action.verb} ${action.target.vmid} ${phase}: ${action.error?.message ?? 'no reason given'} [${action.actionId}]`);
    this.name = 'ActionFailedError';
    this.code = code;
  }
}

interface Waiter {
  want: 'started' | 'terminal';
  since: number;
  resolve: (s: ActionState) => void;
  reject: (e: unknown) => void;
}

const isTerminal = (p: Phase) => RANK[p] === 2;
const STALE_MS = 10_000;

export class ActionTracker {
  private readonly states = new Map<string, ActionState>();
  private readonly waiters = new Map<string, Set<Waiter>>();
  private sub?: Stoppable;
  private sweep?: NodeJS.Timeout;
  private rechecking = false;

  constructor(private readonly bus: Bus, private readonly log: AppLogger) {}

  async start(): Promise<void> {
    this.sub = this.bus.subscribe<Action>('fleet.actions.>', (env) => this.observe(env), { schema: Action });
    await this.bus.nc.flush();
    // the live subscription is core NATS: a reconnect may drop an outcome; the stream has it
    this.sweep = setInterval(() => void this.recheck(), STALE_MS);
  }

  async stop(): Promise<void> {
    if (this.sweep) clearInterval(this.sweep);
    await this.sub?.stop();
    for (const set of this.waiters.values()) for (const w of set) w.reject(new Error('action tracker stopped'));
    this.waiters.clear();
  }

  /** Learn what happened to actions since `since` (a resumed workflow's start). */
  async preload(since: Date): Promise<number> {
    const evs = await replayStored(this.bus, 'fleet.actions.>', since);
    for (const ev of evs) if (!ev.invalid) this.observe(ev.env as Envelope<Action>);
    return evs.length;
  }

  /** Waiters older than STALE_MS: read the stream since the oldest of them once. */
  private async recheck(): Promise<void> {
    if (this.rechecking) return;
    let oldest = Infinity;
    for (const set of this.waiters.values()) for (const w of set) if (Date.now() - w.since > STALE_MS) oldest = Math.min(oldest, w.since);
    if (oldest === Infinity) return;
    this.rechecking = true;
    try {
      await this.preload(new Date(oldest - 2000));
    } catch (e) {
      this.log.debug({ err: (e as Error).message }, 'action history re-check failed');
    } finally {
      this.rechecking = false;
    }
  }

  state(actionId: string): ActionState | undefined {
    return this.states.get(actionId);
  }

  /** Propose (unless already approved once) and wait until the action started or finished. A
   *  refused, failed or denied action rejects with ActionFailedError. */
  async execute(spec: ActionSpec, opts: { until: 'started' | 'terminal'; correlationId?: string; signal?: AbortSignal; onApproved?: () => void }): Promise<ActionState> {
    const wait = this.waitFor(spec.actionId, opts.until, opts.signal);
    // an abort while proposing rejects `wait` before anyone awaits it: not an unhandled rejection
    wait.promise.catch(() => undefined);
    if (!this.states.has(spec.actionId)) {
      try {
        await this.propose(spec, opts.correlationId ?? spec.workflowId, opts.signal);
      } catch (e) {
        this.forget(spec.actionId, wait);
        throw e;
      }
    }
    opts.onApproved?.();
    return wait.promise;
  }

  /** Ask the decision agent; a hold (busy guest, budget) is asked again when it passes. */
  private async propose(spec: ActionSpec, correlationId: string, signal?: AbortSignal): Promise<void> {
    const action: ActionProposal['action'] = {
      actionId: spec.actionId,
      verb: spec.verb,
      target: spec.target,
      params: spec.params ?? {},
      workflowId: spec.workflowId,
      ...(spec.rationale ? { rationale: spec.rationale } : {}),
      ...(spec.attempt !== undefined ? { attempt: spec.attempt } : {}),
      ...(spec.incidentId ? { incidentId: spec.incidentId } : {}),
    };
    const req: ActionProposal = { action, proposer: spec.proposer ?? 'workflow', hung: spec.hung ?? false };
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const r = await this.bus.request<ProposalVerdict>(subjects.propose('action'), 'ActionProposal', req, 15_000);
      if (r.verdict === 'allow' || r.verdict === 'needs-approval') return;
      if (r.verdict === 'hold' && r.retryAt !== undefined) {
        const waitMs = Math.min(Math.max(250, r.retryAt - Date.now()), 10_000);
        this.announceHold(spec, r, waitMs);
        await sleep(waitMs, signal);
        continue;
      }
      const code = r.verdict === 'dry-run' ? 'HOMEOSTAT_ERR_DRY_RUN' : 'HOMEOSTAT_ERR_POLICY_DENIED';
      const refused = { ...action, proposer: req.proposer, requestedBy: 'workflows', needsApproval: false, error: { code, message: `policy gate: ${r.verdict}: ${r.reasons.join('; ')}`.slice(0, 2000) } };
      this.observe(this.bus.envelope('ActionDenied', refused as Action));
      throw new ActionFailedError(refused as Action, 'denied');
    }
  }

  /** The gate holds this proposal (cooldown, budget, a busy guest): say so on the workflow's
   *  subjects (GATE.HOLD), so whoever follows it reads "waiting for cooldown 15 s", not silence. */
  private announceHold(spec: ActionSpec, r: ProposalVerdict, waitMs: number): void {
    const kind = WORKFLOW_KINDS.find((k) => spec.workflowId.startsWith(`${k}-`));
    if (!kind) return;
    const reason = r.reasons[0] ?? 'held by the policy gate';
    const data: WorkflowEvent = {
      workflowId: spec.workflowId, kind, event: 'GATE.HOLD', vmid: spec.target.vmid, node: spec.target.node,
      detail: { waitMs, waitingFor: reason.split(':')[0].slice(0, 80), reason, verb: spec.verb },
    };
    this.bus.publish(subjects.workflow(kind, spec.workflowId, 'GATE.HOLD'), 'WorkflowEvent', data, { retryForMs: waitMs }).catch((e: unknown) =>
      this.log.debug({ err: (e as Error).message }, 'could not announce a gate hold'));
  }

  /** Wait for an action someone (maybe this process before a restart) already published. */
  waitFor(actionId: string, want: 'started' | 'terminal', signal?: AbortSignal): { promise: Promise<ActionState>; waiter?: Waiter } {
    const s = this.states.get(actionId);
    if (s && (isTerminal(s.phase) || (want === 'started' && s.phase === 'started'))) {
      return { promise: isTerminal(s.phase) && s.phase !== 'succeeded' ? Promise.reject(new ActionFailedError(s.action, s.phase)) : Promise.resolve(s) };
    }
    let waiter!: Waiter;
    const promise = new Promise<ActionState>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = () => {
        this.waiters.get(actionId)?.delete(waiter);
        reject(signal!.reason);
      };
      waiter = {
        want,
        since: Date.now(),
        resolve: (v) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(v);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      let set = this.waiters.get(actionId);
      if (!set) this.waiters.set(actionId, (set = new Set()));
      set.add(waiter);
    });
    return { promise, waiter };
  }

  private forget(actionId: string, wait: { promise: Promise<ActionState>; waiter?: Waiter }): void {
    wait.promise.catch(() => undefined);
    if (wait.waiter) this.waiters.get(actionId)?.delete(wait.waiter);
  }

  private observe(env: Envelope<Action>): void {
    const phase = TYPE_PHASE[env.type];
    const a = env.data;
    if (!phase || !a?.actionId) return;
    const waiting = this.waiters.get(a.actionId);
    if (!a.workflowId && !waiting) return; // runbook actions of other agents: not ours to track
    const prev = this.states.get(a.actionId);
    if (prev && RANK[prev.phase] >= RANK[phase]) return;
    const s: ActionState = { phase, action: a, at: Date.parse(env.ts) || Date.now() };
    this.states.set(a.actionId, s);
    if (this.states.size > 50_000) this.prune();
    if (!waiting) return;
    for (const w of [...waiting]) {
      if (isTerminal(phase)) {
        waiting.delete(w);
        if (phase === 'succeeded') w.resolve(s);
        else w.reject(new ActionFailedError(a, phase));
      } else if (phase === 'started' && w.want === 'started') {
        waiting.delete(w);
        w.resolve(s);
      }
    }
    if (!waiting.size) this.waiters.delete(a.actionId);
  }

  private prune(): void {
    const cutoff = Date.now() - 3_600_000;
    for (const [id, s] of this.states) if (s.at < cutoff && !this.waiters.has(id)) this.states.delete(id);
    if (this.states.size > 50_000) this.log.warn({ tracked: this.states.size }, 'many recent workflow actions tracked');
  }
}

export const isActionFailed = (e: unknown): e is ActionFailedError => e instanceof ActionFailedError;

