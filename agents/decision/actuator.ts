// Turning a gate verdict into messages: DecisionMade for every verdict, ActionApproved (allowed),
// ActionRequested (needs approval), a flapping incident (flap hold-down), a failover request.
// Ids are deterministic per case+verb+attempt, so a redelivered trigger never makes a second action.
import { createHash } from 'node:crypto';
import { describeError } from '../../core/mod.ts';
import {
  ActionVerb, DesiredState, GuestRecord, LockRecord, NodeRecord, WorkflowRecord, kvGet, kvKeys, kvPut, sealAction, subjects,
  type Action, type ActionProposal, type Decision, type Envelope, type FenceProposal, type ProposalVerdict,
} from '../../bus/mod.ts';
import { Approvals } from './approvals.ts';
import type { BusyGuests } from './busy-guests.ts';
import type { CaseQueue } from './case-queue.ts';
import type { DecisionContext } from './context.ts';
import { clearHoldDown, openHoldDown } from './holddown.ts';
import { gate, gateFence, type GateFacts, type GateResult, type Proposal } from './policy.ts';
import { IN_FLIGHT, type Step } from './runbook.ts';
import type { ApprovalRecord, CaseRecord } from './store.ts';

export interface ActOptions {
  rationale: string;
  hung?: boolean;
  continuation?: boolean;
  advisor?: Decision['advisor'];
  requestedBy?: string;
}

const hash = (s: string, n = 16) => createHash('sha256').update(s).digest('hex').slice(0, n);

/** The same case, verb and attempt always give the same action id (the JetStream msgId). */
export function actionIdFor(caseId: string, verb: string, attempt: number): string {
  return `act-${hash(`${caseId}|${verb}|${attempt}`)}`;
}

const AUTOMATED = new Set(['runbook', 'llm']);

/** What the actuator asks of the engine, which knows the open incidents and the case timers. */
export interface ActuatorHooks {
  /** Symptom or suppressed guest of some open incident other than `caseId`'s own root cause. */
  isSymptom(vmid: number, caseId: string): boolean;
  /** The gate said hold: look at the case again when it says. */
  onHold(c: CaseRecord, r: GateResult): void;
}

export class Actuator {
  readonly approvals: Approvals;
  readonly settleMs: number;

  constructor(private readonly ctx: DecisionContext, private readonly queue: CaseQueue, private readonly busy: BusyGuests, private readonly hooks: ActuatorHooks) {
    this.approvals = new Approvals(ctx.bus, ctx.store, ctx.log, ctx.metrics, {
      approved: (rec, by, at, key) => queue.serial(rec.caseId, () => this.onApproved(rec, by, at, key)),
      denied: (rec, by, reason) => queue.serial(rec.caseId, () => this.onDenied(rec, by, reason)),
    });
    const p = ctx.fleet.policies;
    this.settleMs = Math.max(p.cooldownMs, 3 * p.senseIntervalMs * p.alerts.healthFailures + 1000);
  }

  async facts(vmid: number | undefined, c: CaseRecord, o: { hung?: boolean; continuation?: boolean }): Promise<GateFacts> {
    const now = Date.now();
    const spec = vmid === undefined ? undefined : this.ctx.fleet.byVmid.get(vmid);
    if (!spec) return { now, dryRun: this.ctx.dryRun };
    const { bus, store } = this.ctx;
    const [node, desired, hold, remediations, lock, recentActions] = await Promise.all([
      this.nodeOf(spec.vmid),
      kvGet(bus.kv.fleetState, kvKeys.desired(spec.vmid), DesiredState),
      store.hold(spec.vmid),
      store.remediations(spec.vmid),
      kvGet(bus.kv.locks, kvKeys.lock(spec.vmid), LockRecord),
      store.recentActions(now),
    ]);
    return {
      now,
      // where it runs now (a failover moves guests), not where the manifest put it
      guest: { vmid: spec.vmid, node, protected: spec.protected },
      desired: desired?.value,
      rootCause: c.incident?.rootCause.vmid,
      isSymptom: this.hooks.isSymptom(spec.vmid, c.caseId),
      hung: o.hung,
      continuation: o.continuation,
      held: hold !== undefined,
      busy: this.busy.isBusy(spec.vmid, now) || (lock !== undefined && lock.value.expiresAt > now),
      remediations,
      recentActions,
      dryRun: this.ctx.dryRun,
    };
  }

  /** Publish the decision for a verdict and carry it out. The case is saved. */
  async act(c: CaseRecord, p: Proposal, r: GateResult, o: ActOptions): Promise<{ actionId?: string }> {
    const verb = ActionVerb.safeParse(p.verb);
    const vmid = p.vmid!;
    const node = await this.nodeOf(vmid);
    const base = { incidentId: c.caseId, target: this.ctx.fleet.byVmid.has(vmid) ? { vmid, node } : {}, proposer: p.proposer, rationale: o.rationale.slice(0, 2000), verdict: r.verdict, reasons: r.reasons, advisor: o.advisor };
    if (r.verdict === 'deny' || r.verdict === 'hold' || !verb.success) {
      await this.decide(c, { ...base, verb: verb.success ? verb.data : 'none' }, `${r.verdict}|${p.verb}|${vmid}|${r.rule ?? r.reasons.join('|')}`);
      if (r.flapping) await this.holdDown(vmid, c, r.reasons.join('; '));
      await this.ctx.store.putCase(c);
      if (r.verdict === 'hold') this.hooks.onHold(c, r);
      return {};
    }
    const attempt = c.steps.length;
    const actionId = actionIdFor(c.caseId, verb.data, attempt);
    const action = await this.buildAction(c, verb.data, vmid, node, actionId, attempt, p, o, r.verdict === 'needs-approval');
    const decided = await this.decide(c, { ...base, verb: verb.data, actionId });
    const step: Step = { actionId, vmid, verb: verb.data, attempt, status: 'dry-run', proposer: p.proposer, at: Date.now() };
    if (r.verdict === 'allow') {
      await this.dispatch(c, action, decided.id, o.continuation);
      step.status = 'approved';
    } else if (r.verdict === 'needs-approval') {
      this.busy.mark(vmid, actionId, c.caseId);
      const now = Date.now();
      await this.approvals.request({
        action, caseId: c.caseId, correlationId: c.correlationId, causationId: decided.id, requestedAt: new Date(now).toISOString(),
        expiresAt: now + this.ctx.fleet.policies.approvalTimeoutMs, hung: o.hung ?? false, continuation: o.continuation ?? false, inRunbook: p.inRunbook,
      });
      step.status = 'requested';
    }
    step.published = true;
    c.steps.push(step);
    c.lastDecision = undefined;
    await this.ctx.store.putCase(c);
    return { actionId };
  }

  /** Seal and publish an approved action (the only way one reaches the action agent), and count it
   *  in the global budget. `caseId` undefined: a workflow's action, tracked by the workflow. */
  private async dispatch(c: CaseRecord, action: Action, causationId: string, continuation?: boolean, track = true): Promise<void> {
    const vmid = action.target.vmid;
    this.busy.mark(vmid, action.actionId, track ? c.caseId : undefined);
    const sealed = sealAction(action, this.ctx.signer, this.ctx.actionTtlMs);
    await this.ctx.bus.publish(subjects.action('approved'), 'ActionApproved', sealed, { correlationId: c.correlationId, causationId, msgId: action.actionId });
    const now = Date.now();
    await this.ctx.store.countAction(now).catch((e: unknown) => this.ctx.log.warn({ err: (e as Error).message }, 'could not count the action in the global budget'));
    if (AUTOMATED.has(action.proposer) && !continuation) await this.ctx.store.addRemediation(vmid, now, this.ctx.fleet.policies.flap.windowMs);
    this.ctx.log.info({ actionId: action.actionId, verb: action.verb, vmid, caseId: c.caseId }, 'action approved');
  }

  /** Publish a DecisionMade; with `dedupKey`, the same decision twice in a row is published once. */
  private async decide(c: CaseRecord, d: Decision, dedupKey?: string): Promise<Envelope<Decision>> {
    const msgId = d.actionId ? `${d.actionId}.decision.${d.verdict}` : `dec-${hash(`${c.caseId}|${dedupKey ?? Date.now()}`, 24)}`;
    if (dedupKey && c.lastDecision === dedupKey) return this.ctx.bus.envelope('DecisionMade', d);
    const env = await this.ctx.bus.publish(subjects.decision(c.caseId), 'DecisionMade', d, { correlationId: c.correlationId, causationId: c.causationId, msgId });
    if (dedupKey) c.lastDecision = dedupKey;
    this.ctx.log.info({ caseId: c.caseId, verb: d.verb, vmid: d.target.vmid, verdict: d.verdict, reasons: d.reasons }, 'decision');
    return env;
  }

  async notify(c: CaseRecord, rationale: string, advisor?: Decision['advisor']): Promise<void> {
    const rc = c.incident?.rootCause;
    await this.decide(c, { incidentId: c.caseId, verb: 'notify', target: { vmid: rc?.vmid, node: rc?.node }, proposer: 'runbook', rationale, verdict: 'notify', reasons: [rationale], advisor }, `notify|${rationale}`);
    await this.ctx.store.putCase(c);
  }

  /** Hand a node failure to the failover workflow; without one, an operator notice. */
  async failover(c: CaseRecord, node: string, rationale: string): Promise<void> {
    if (c.failoverRequested) return;
    let verdict: 'allow' | 'notify' | 'dry-run' = 'allow';
    let reason: string;
    if (this.ctx.dryRun) {
      verdict = 'dry-run';
      reason = `dry-run: would hand ${node} to the failover workflow (fence it, recover its guests elsewhere); nothing executed`;
    } else {
      try {
        const r = await this.ctx.bus.request<{ workflowId?: string }>(subjects.cmd('failover'), 'Command', { args: { node, incidentId: c.caseId }, requestedBy: 'decision' }, this.ctx.failoverTimeoutMs);
        reason = `handed to the failover workflow${r?.workflowId ? ` ${r.workflowId}` : ''}`;
      } catch (e) {
        verdict = 'notify';
        reason = `failover not started (${describeError(e)}): operator action needed`;
      }
    }
    await this.decide(c, { incidentId: c.caseId, verb: 'failover', target: { node }, proposer: 'runbook', rationale, verdict, reasons: [reason] });
    c.failoverRequested = true;
    await this.ctx.store.putCase(c);
  }

  private async holdDown(vmid: number, c: CaseRecord, reason: string): Promise<void> {
    await openHoldDown(this.ctx, vmid, await this.nodeOf(vmid), c, reason);
    this.ctx.metrics?.flapHolds.inc();
  }

  clearHold(vmid: number, by: string): Promise<boolean> {
    return clearHoldDown(this.ctx, vmid, by);
  }

  /** An operator-initiated action (`fleet.cmd.action`), gated like any other proposal. */
  async operatorAction(verb: string, vmid: number, by: string, env: Envelope): Promise<{ actionId?: string; verdict: string; reasons: string[] }> {
    const caseId = `op-${env.id.toLowerCase()}`;
    return this.queue.serial(caseId, () => this.runOperatorAction(caseId, verb, vmid, by, env));
  }

  private async runOperatorAction(caseId: string, verb: string, vmid: number, by: string, env: Envelope): Promise<{ actionId?: string; verdict: string; reasons: string[] }> {
    const now = Date.now();
    const c: CaseRecord = { caseId, correlationId: env.correlationId, causationId: env.id, steps: [], openedAt: now, updatedAt: now };
    const p: Proposal = { verb, vmid, proposer: 'operator', inRunbook: true };
    const r = gate(p, await this.facts(vmid, c, {}), this.ctx.fleet.policies);
    const out = r.verdict === 'deny' && !this.ctx.fleet.byVmid.has(vmid) ? {} : await this.act(c, p, r, { rationale: `requested by ${by}`, requestedBy: by });
    // An operator who shuts a guest down wants it down: the loop must not "heal" it afterwards.
    if (r.verdict === 'allow' && (verb === 'shutdown' || verb === 'stop')) {
      await kvPut(this.ctx.bus.kv.fleetState, kvKeys.desired(vmid), { state: 'stopped', maintenance: false, by, reason: `${verb} requested by ${by}`, at: new Date().toISOString() } satisfies DesiredState);
    }
    if (!c.steps.some((s) => IN_FLIGHT.includes(s.status))) await this.ctx.store.deleteCase(c.caseId);
    return { ...out, verdict: r.verdict, reasons: r.reasons };
  }

  /** A workflow's (or chaos experiment's) action, gated like any other proposal. Asked again with
   *  the same actionId (a restored workflow), it answers with what was decided, never twice. */
  async proposeForWorkflow(req: ActionProposal, env: Envelope): Promise<ProposalVerdict> {
    const a = req.action;
    const caseId = `wf-${a.actionId}`;
    return this.queue.serial(caseId, async () => {
      if (this.busy.busyWith(a.target.vmid) === a.actionId) return { verdict: 'allow', reasons: ['already approved'], actionId: a.actionId };
      // a get of its own key: listing every pending approval made each of a 5,000-guest boot's
      // proposals open a consumer on the bucket (bench/boot.ts)
      if ((await this.ctx.store.approval(a.actionId))?.action.actionId === a.actionId) return { verdict: 'needs-approval', reasons: ['waiting for an operator'], actionId: a.actionId };
      const now = Date.now();
      const c: CaseRecord = { caseId, correlationId: env.correlationId, causationId: env.id, steps: [], openedAt: now, updatedAt: now };
      const p: Proposal = { verb: a.verb, vmid: a.target.vmid, proposer: req.proposer, inRunbook: true, targetNode: a.params.targetNode, snapname: a.params.snapname, workflowId: a.workflowId };
      const facts: GateFacts = { ...(await this.facts(a.target.vmid, c, { hung: req.hung })), workflow: { automatic: a.incidentId !== undefined }, chaosRollback: req.proposer === 'chaos' && a.verb === 'rollback' };
      if (a.verb === 'migrate') {
        const fence = await this.ctx.store.fence(a.target.node);
        facts.failover = { sourceNode: a.target.node, fenced: fence?.workflowId === a.workflowId };
      }
      const r = gate(p, facts, this.ctx.fleet.policies);
      const action: Action = {
        ...a, params: a.params ?? {}, proposer: req.proposer, requestedBy: 'workflows', needsApproval: r.verdict === 'needs-approval',
        target: { ...a.target, name: this.ctx.fleet.byVmid.get(a.target.vmid)?.name ?? a.target.name },
      };
      const decided = await this.decide(c, { incidentId: a.workflowId, actionId: a.actionId, verb: a.verb, target: { vmid: a.target.vmid, node: a.target.node }, proposer: req.proposer, rationale: a.rationale ?? `${req.proposer} ${a.workflowId}`, verdict: r.verdict, reasons: r.reasons });
      if (r.verdict === 'allow') await this.dispatch(c, action, decided.id, false, false);
      else if (r.verdict === 'needs-approval') {
        c.steps.push({ actionId: a.actionId, vmid: a.target.vmid, verb: a.verb, attempt: a.attempt ?? 0, status: 'requested', proposer: req.proposer, at: now, published: true });
        await this.ctx.store.putCase(c);
        this.busy.mark(a.target.vmid, a.actionId, caseId);
        await this.approvals.request({
          action, caseId, correlationId: c.correlationId, causationId: decided.id, requestedAt: new Date(now).toISOString(),
          expiresAt: now + this.ctx.fleet.policies.approvalTimeoutMs, hung: req.hung, continuation: false, inRunbook: true,
        });
      }
      return { verdict: r.verdict, reasons: r.reasons, actionId: a.actionId, ...(r.retryAt !== undefined ? { retryAt: r.retryAt } : {}) };
    });
  }

  /** A failover workflow asks to fence the node it fails over; allowed, the fence is remembered so
   *  that the workflow's migrations off that node pass the gate. */
  async proposeFence(req: FenceProposal, env: Envelope): Promise<ProposalVerdict> {
    const wf = (await kvGet(this.ctx.bus.kv.workflows, kvKeys.workflow(req.workflowId), WorkflowRecord))?.value;
    const args = (wf?.input as { args?: { node?: string } } | undefined)?.args;
    const rec = (await kvGet(this.ctx.bus.kv.fleetState, kvKeys.node(req.node), NodeRecord))?.value;
    const fresh = rec && Date.now() - Date.parse(rec.updatedAt) < 3 * this.ctx.fleet.policies.senseIntervalMs;
    const r = gateFence(req.node, {
      dryRun: this.ctx.dryRun,
      failoverOf: wf?.kind === 'failover' && wf.status === 'running' ? args?.node : undefined,
      node: fresh ? { reachable: rec.reachable, status: rec.status } : undefined,
    });
    const c: CaseRecord = { caseId: req.workflowId, correlationId: env.correlationId, causationId: env.id, steps: [], openedAt: Date.now(), updatedAt: Date.now() };
    await this.decide(c, { incidentId: req.workflowId, verb: 'failover', target: { node: req.node }, proposer: 'workflow', rationale: `fence ${req.node} before recovering its guests`, verdict: r.verdict, reasons: r.reasons }, `fence|${req.node}|${r.verdict}`);
    if (r.verdict === 'allow') await this.ctx.store.putFence({ node: req.node, workflowId: req.workflowId, at: new Date().toISOString() });
    return { verdict: r.verdict, reasons: r.reasons };
  }

  private async onApproved(rec: ApprovalRecord, by: string, at: string, key?: string): Promise<GateResult> {
    const a = rec.action;
    const c = (await this.ctx.store.getCase(rec.caseId))?.value;
    if (!c) return { verdict: 'deny', reasons: ['its incident is resolved'] };
    this.busy.forget(a.target.vmid, a.actionId);
    const facts: GateFacts = { ...(await this.facts(a.target.vmid, c, { hung: rec.hung, continuation: rec.continuation })), approved: true };
    if (a.workflowId) facts.workflow = { automatic: a.incidentId !== undefined };
    const r = gate({ verb: a.verb, vmid: a.target.vmid, proposer: a.proposer, inRunbook: rec.inRunbook, workflowId: a.workflowId, targetNode: a.params.targetNode }, facts, this.ctx.fleet.policies);
    if (r.verdict === 'hold') {
      this.busy.mark(a.target.vmid, a.actionId, c.caseId);
    }
    if (r.verdict !== 'allow') return r.verdict === 'dry-run' ? { verdict: 'deny', reasons: r.reasons } : r;
    const decided = await this.decide(c, { incidentId: c.caseId, actionId: a.actionId, verb: a.verb, target: { vmid: a.target.vmid, node: a.target.node }, proposer: a.proposer, rationale: a.rationale ?? '', verdict: 'allow', reasons: [`approved by ${by}`, ...r.reasons] });
    await this.dispatch(c, { ...a, approval: { by, at, approved: true, ...(key ? { key } : {}) } }, decided.id, rec.continuation);
    const step = c.steps.find((s) => s.actionId === a.actionId);
    if (step) step.status = 'approved';
    await this.ctx.store.putCase(c);
    return r;
  }

  private async onDenied(rec: ApprovalRecord, by: string, reason: string): Promise<void> {
    const a = rec.action;
    this.busy.forget(a.target.vmid, a.actionId);
    const c = (await this.ctx.store.getCase(rec.caseId))?.value;
    const step = c?.steps.find((s) => s.actionId === a.actionId);
    if (!c || !step) return;
    step.status = 'denied';
    step.doneAt = Date.now();
    await this.decide(c, { incidentId: c.caseId, actionId: a.actionId, verb: a.verb, target: { vmid: a.target.vmid, node: a.target.node }, proposer: a.proposer, rationale: a.rationale ?? '', verdict: 'deny', reasons: [reason.slice(0, 2000), `by ${by}`] });
    if (c.incident) await this.ctx.store.putCase(c);
    else await this.ctx.store.deleteCase(c.caseId);
  }

  private async buildAction(c: CaseRecord, verb: ActionVerb, vmid: number, node: string, actionId: string, attempt: number, p: Proposal, o: ActOptions, needsApproval: boolean): Promise<Action> {
    const spec = this.ctx.fleet.byVmid.get(vmid)!;
    const graceful = verb === 'shutdown' || verb === 'reboot';
    const action: Action = {
      actionId, verb, target: { vmid, node, name: spec.name },
      params: graceful ? { timeoutSec: this.ctx.fleet.policies.shutdownTimeoutSec } : {},
      proposer: p.proposer, requestedBy: (o.requestedBy ?? 'decision').slice(0, 120), rationale: o.rationale.slice(0, 2000), needsApproval, attempt,
    };
    if (c.incident) action.incidentId = c.incident.id;
    if (p.targetNode) action.params.targetNode = p.targetNode;
    return action;
  }

  /** Where the guest runs now (sensing's record), else where the manifest puts it. */
  private async nodeOf(vmid: number): Promise<string> {
    const rec = await kvGet(this.ctx.bus.kv.fleetState, kvKeys.guest(vmid), GuestRecord);
    return rec?.value.node ?? this.ctx.fleet.byVmid.get(vmid)?.node ?? 'unknown';
  }
}
