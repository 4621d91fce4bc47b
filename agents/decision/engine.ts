// The decision loop: each incident is a case; on every trigger (incident event, action outcome,
// timer) the case is evaluated again: runbook first, the advisor when the runbook is unsure,
// then the policy gate, whose verdict is published and, when allowed, executed by the action agent.
import { GuestRecord, kvGet, kvKeys, kvList, Incident, subjects, type Envelope, type Action } from '../../bus/mod.ts';
import { IN_FLIGHT, nextStep, runbookVerbs, type Plan, type StepStatus } from './runbook.ts';
import { gate, type Proposal } from './policy.ts';
import type { Consultation } from './advisor.ts';
import { Actuator } from './actuator.ts';
import { BusyGuests } from './busy-guests.ts';
import { CaseQueue } from './case-queue.ts';
import type { DecisionContext } from './context.ts';
import type { CaseRecord } from './store.ts';

const TERMINAL: Partial<Record<string, StepStatus>> = { succeeded: 'succeeded', failed: 'failed', denied: 'denied' };
/** Cases whose incident is gone from KV are forgotten after this long. */
const STALE_CASE_MS = 24 * 3600_000;

/** The engine composes a case queue, the busy-guest book and the actuator that publishes verdicts. */
export class DecisionEngine {
  private stopped = false;
  private readonly open = new Map<string, Incident>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly queue: CaseQueue;
  private readonly busy: BusyGuests;
  /** Publishes verdicts; the request/reply verbs (commands.ts) go to it directly. */
  readonly actuator: Actuator;

  constructor(private readonly ctx: DecisionContext) {
    this.queue = new CaseQueue(ctx.log);
    this.busy = new BusyGuests(ctx.fleet.policies);
    this.actuator = new Actuator(ctx, this.queue, this.busy, {
      isSymptom: (vmid, caseId) => this.isSymptom(vmid, caseId),
      onHold: (c, r) => {
        if (r.retryAt !== undefined) this.schedule(c.caseId, r.retryAt);
      },
    });
  }

  /** Wait for the work already queued (tests, clean stop). */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  /** Rebuild memory from KV and pick up every open case where it was left. */
  async start(): Promise<void> {
    const { store } = this.ctx;
    for (const inc of (await kvList(this.ctx.bus.kv.incidents, '', Incident)).values()) if (inc.status === 'open') this.open.set(inc.id, inc);
    const cases = await store.cases();
    for (const c of cases) this.busy.index(c);
    for (const a of await this.actuator.approvals.start()) this.busy.mark(a.action.target.vmid, a.action.actionId);
    for (const c of cases) {
      const inc = c.incident && ((await kvGet(this.ctx.bus.kv.incidents, kvKeys.incident(c.incident.id), Incident))?.value ?? c.incident);
      if (!inc || inc.status !== 'open' || (!this.open.has(inc.id) && Date.now() - c.updatedAt > STALE_CASE_MS)) {
        if (!c.steps.some((s) => IN_FLIGHT.includes(s.status))) await store.deleteCase(c.caseId);
        continue;
      }
      c.incident = inc;
      this.queue.background(c.caseId, () => this.evaluate(c));
    }
    // incidents opened while no decision agent ran (before its durable consumer existed)
    const known = new Set(cases.map((c) => c.caseId));
    for (const inc of this.open.values()) {
      if (known.has(inc.id)) continue;
      const now = Date.now();
      const c: CaseRecord = { caseId: inc.id, incident: inc, correlationId: inc.id, steps: [], openedAt: now, updatedAt: now };
      this.queue.background(c.caseId, async () => {
        if ((await this.ctx.store.getCase(c.caseId)) === undefined) await this.evaluate(c);
      });
    }
  }

  /** Level-triggered check, periodic and after a reconnect: the incidents KV is the truth an
   *  event lost in an outage leaves behind. A record unchanged for `settledMs` (so not one whose
   *  event is still on its way) that disagrees with what this engine holds is applied as its
   *  event would have been: open and unknown → a case; resolved and still held → closed. */
  async reconcile(settledMs: number): Promise<number> {
    const cutoff = Date.now() - settledMs;
    let n = 0;
    for (const inc of (await kvList(this.ctx.bus.kv.incidents, '', Incident)).values()) {
      if (Date.parse(inc.updatedAt) > cutoff) continue;
      const held = this.open.has(inc.id);
      if ((inc.status === 'open') === held) continue;
      n++;
      const phase = inc.status === 'open' ? 'opened' : 'resolved';
      await this.onIncident(this.ctx.bus.envelope(phase === 'opened' ? 'IncidentOpened' : 'IncidentResolved', inc, { correlationId: inc.id }), subjects.incident(inc.id, phase));
    }
    return n;
  }

  stop(): void {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    this.actuator.approvals.stop();
  }

  async onIncident(env: Envelope<Incident>, subject: string): Promise<void> {
    const inc = env.data;
    if (subject.endsWith('.resolved') || inc.status === 'resolved') {
      this.open.delete(inc.id);
      return this.queue.serial(inc.id, () => this.close(inc.id, 'incident resolved'));
    }
    this.open.set(inc.id, inc);
    const timer = this.ctx.metrics?.decision.startTimer();
    return this.queue.serial(inc.id, async () => {
      const now = Date.now();
      const c = (await this.ctx.store.getCase(inc.id))?.value ?? { caseId: inc.id, correlationId: env.correlationId, steps: [], openedAt: now, updatedAt: now };
      c.incident = inc;
      c.correlationId = env.correlationId;
      c.causationId = env.id;
      await this.ctx.store.putCase(c);
      await this.evaluate(c);
    }).finally(() => timer?.());
  }

  /** Action lifecycle events, ours and others' (workflows): busy guests and step outcomes. */
  async onAction(env: Envelope<Action>, subject: string): Promise<void> {
    const a = env.data;
    const phase = subject.slice(subject.lastIndexOf('.') + 1);
    const caseId = this.busy.caseOf(a.actionId);
    if (phase === 'approved' || phase === 'requested' || phase === 'started') {
      if (!caseId) this.busy.mark(a.target.vmid, a.actionId);
      if (phase !== 'started' || !caseId) return;
    }
    const terminal = TERMINAL[phase];
    if (terminal) this.busy.forget(a.target.vmid, a.actionId);
    if (terminal) this.ctx.metrics?.actions.inc({ verb: a.verb, proposer: a.proposer, outcome: terminal });
    if (!caseId) return;
    return this.queue.serial(caseId, async () => {
      const c = (await this.ctx.store.getCase(caseId))?.value;
      const step = c?.steps.find((s) => s.actionId === a.actionId);
      if (!c || !step || !IN_FLIGHT.includes(step.status)) return;
      step.status = terminal ?? 'started';
      if (terminal) {
        step.doneAt = Date.now();
        if (a.error) step.errorCode = a.error.code;
      }
      c.causationId = env.id;
      await this.ctx.store.putCase(c);
      if (!terminal) return;
      if (!c.incident) return this.ctx.store.deleteCase(c.caseId); // an operator's action: done
      await this.evaluate(c);
    });
  }

  /** An operator clears a flap hold-down: the guest's open cases are judged again. */
  async releaseHold(vmid: number, by: string): Promise<{ vmid: number; cleared: boolean }> {
    const cleared = await this.actuator.clearHold(vmid, by);
    for (const inc of this.open.values()) {
      if (inc.rootCause.vmid !== vmid || inc.kind === 'flapping') continue;
      this.queue.background(inc.id, async () => {
        const c = (await this.ctx.store.getCase(inc.id))?.value;
        if (!c) return;
        c.lastDecision = undefined;
        await this.evaluate(c);
      });
    }
    return { vmid, cleared };
  }

  /** Symptom or suppressed guest of some open incident other than `caseId`'s own root cause. */
  private isSymptom(vmid: number, caseId: string): boolean {
    for (const i of this.open.values()) {
      if (i.id === caseId && i.rootCause.vmid === vmid) continue;
      if (i.symptoms.some((s) => s.vmid === vmid) || i.suppressed.some((s) => s.vmid === vmid)) return true;
    }
    return false;
  }

  private async evaluate(c: CaseRecord): Promise<void> {
    if (this.stopped || !c.incident) return;
    const inc = (await kvGet(this.ctx.bus.kv.incidents, kvKeys.incident(c.incident.id), Incident))?.value ?? c.incident;
    if (inc.status !== 'open') return this.close(c.caseId, 'incident resolved');
    if (Date.parse(inc.updatedAt) >= Date.parse(c.incident.updatedAt)) c.incident = inc;
    if (c.steps.some((s) => IN_FLIGHT.includes(s.status))) return;
    const plan = nextStep(c.incident, c.steps, Date.now(), this.actuator.settleMs, await this.stillFailing(c));
    if (plan.kind === 'wait') return this.schedule(c.caseId, plan.until);
    if (plan.kind === 'done') return;
    if (plan.kind === 'failover') return this.actuator.failover(c, plan.node, plan.rationale);

    let advice: Consultation | undefined;
    if (plan.uncertain) {
      advice = await this.ctx.advisor.consult(c.incident, plan.uncertain, c.steps);
      if (advice.used) {
        const adopted = await this.tryAdvice(c, plan, advice);
        if (adopted) return;
      }
    }
    const record = advice ? { used: false, ...(advice.used ? { discarded: advice.discarded ?? 'discarded', confidence: advice.confidence } : { discarded: advice.discarded }) } : undefined;
    if (plan.kind === 'notify') return this.actuator.notify(c, plan.rationale, record);
    const vmid = c.incident.rootCause.vmid!;
    const p: Proposal = { verb: plan.verb, vmid, proposer: 'runbook', inRunbook: true };
    const facts = await this.actuator.facts(vmid, c, { hung: plan.hung, continuation: plan.continuation });
    await this.actuator.act(c, p, gate(p, facts, this.ctx.fleet.policies), { rationale: plan.rationale, hung: plan.hung, continuation: plan.continuation, advisor: record });
  }

  /** Sensing's record of the root-cause guest, written after our last step finished, shows it failing. */
  private async stillFailing(c: CaseRecord): Promise<boolean> {
    const last = c.steps.at(-1);
    const vmid = c.incident?.rootCause.vmid;
    if (last?.status !== 'succeeded' || last.doneAt === undefined || vmid === undefined) return false;
    const rec = (await kvGet(this.ctx.bus.kv.fleetState, kvKeys.guest(vmid), GuestRecord))?.value;
    if (!rec || Date.parse(rec.updatedAt) <= last.doneAt) return false;
    return rec.state !== 'running' || (c.incident!.rootCause.alert === 'HealthCheckFailed' && rec.health === 'unhealthy');
  }

  /** Gate the advisor's proposal; a denied one is discarded (recorded) and the runbook floor applies. */
  private async tryAdvice(c: CaseRecord, plan: Exclude<Plan, { kind: 'wait' | 'done' | 'failover' }>, advice: Consultation & { used: true }): Promise<boolean> {
    const inc = c.incident!;
    const proposal = advice.proposal;
    const vmid = proposal.target.vmid ?? inc.rootCause.vmid;
    const p: Proposal = { verb: proposal.verb, vmid, proposer: 'llm', inRunbook: runbookVerbs(inc.rootCause.alert).includes(proposal.verb as never), targetNode: proposal.params?.targetNode, snapname: proposal.params?.snapname };
    const hung = plan.kind === 'act' ? plan.hung : c.steps.some((s) => (s.verb === 'reboot' || s.verb === 'shutdown') && (s.status === 'failed' || s.status === 'succeeded'));
    const r = gate(p, await this.actuator.facts(vmid, c, { hung }), this.ctx.fleet.policies);
    if (r.verdict === 'deny') {
      advice.discarded = `policy: ${r.reasons.join('; ')}`.slice(0, 2000);
      return false;
    }
    await this.actuator.act(c, p, r, { rationale: `LLM: ${proposal.rationale}`.slice(0, 2000), hung, advisor: { used: true, confidence: advice.confidence } });
    return true;
  }

  private schedule(caseId: string, at: number): void {
    if (this.stopped) return;
    const old = this.timers.get(caseId);
    if (old) clearTimeout(old);
    this.timers.set(caseId, setTimeout(() => {
      this.timers.delete(caseId);
      this.queue.background(caseId, async () => {
        const c = (await this.ctx.store.getCase(caseId))?.value;
        if (c) await this.evaluate(c);
      });
    }, Math.max(0, at - Date.now()) + 10));
  }

  private async close(caseId: string, reason: string): Promise<void> {
    const t = this.timers.get(caseId);
    if (t) clearTimeout(t);
    this.timers.delete(caseId);
    for (const a of await this.ctx.store.approvals()) {
      if (a.caseId !== caseId) continue;
      const rec = await this.ctx.store.claimApproval(a.action.actionId);
      if (!rec) continue;
      await this.actuator.approvals.publishDenied(rec, 'policy', `${reason}: approval no longer needed`, false, false);
      this.busy.forget(rec.action.target.vmid, rec.action.actionId);
    }
    await this.ctx.store.deleteCase(caseId);
  }
}
