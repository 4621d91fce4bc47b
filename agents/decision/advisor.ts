// The decision agent's side of the LLM advisor (llm/): asked only when the runbook has no
// confident answer. Whatever comes back is untrusted data: checked for shape here, then gated by
// the policy like any other proposal. The advisor's availability is kept in fleet-state `advisor`.
import { type Logger } from '../../core/mod.ts';
import { GuestRecord, NodeRecord, kvGet, kvKeys, kvPut, type AdvisorRecord, type Bus, type Incident } from '../../bus/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import { OllamaAdvisor, PASSIVE_VERBS, Proposal, type Advisor, type AdvisorContext, type ProposalVerb } from '../../llm/mod.ts';
import type { Metrics } from '../runtime/metrics.ts';
import type { Step } from './runbook.ts';


export type Consultation =
  | { used: true; proposal: Proposal; confidence: number; discarded?: string }
  | { used: false; discarded: string };

export interface AdvisorSettings {
  host: string;
  model: string;
  timeoutMs: number;
}

/** Wraps the optional advisor: deadline, shape check, availability record, one log line per change. */
export class AdvisorSeam {
  private readonly advisor?: Advisor;
  private lastAvailable: boolean | undefined;
  private readonly ctl = new AbortController();

  /** `given`: an Advisor; null = none; undefined = an OllamaAdvisor from the config. */
  constructor(given: Advisor | null | undefined, settings: AdvisorSettings, private readonly bus: Bus, private readonly fleet: Fleet, private readonly log: Logger, private readonly timeoutMs: number, private readonly metrics?: Metrics) {
    if (given === undefined) this.advisor = new OllamaAdvisor({ host: settings.host, model: settings.model, timeoutMs: settings.timeoutMs });
    else if (given) this.advisor = given;
  }

  get configured(): boolean {
    return this.advisor !== undefined;
  }

  async init(): Promise<void> {
    if (!this.advisor) return this.record(false, undefined, 'no advisor configured: healing by runbooks');
    try {
      const a = await this.advisor.available();
      await this.record(a.available, a.model, a.reason);
    } catch (e) {
      await this.record(false, undefined, (e as Error).message);
    }
  }

  stop(): void {
    this.ctl.abort(new Error('decision agent stopping'));
  }

  async consult(incident: Incident, reason: string, steps: readonly Step[]): Promise<Consultation> {
    if (!this.advisor) return { used: false, discarded: 'no advisor configured' };
    const timer = this.metrics?.advisorLatency.startTimer();
    const c = await this.ask(incident, reason, steps);
    const outcome = c.used ? 'proposal' : c.outcome;
    timer?.({ outcome });
    this.metrics?.advisorRequests.inc({ outcome });
    return c;
  }

  private async ask(incident: Incident, reason: string, steps: readonly Step[]): Promise<Consultation & { outcome?: string }> {
    if (!this.advisor) return { used: false, discarded: 'no advisor configured' };
    const signal = AbortSignal.any([this.ctl.signal, AbortSignal.timeout(this.timeoutMs)]);
    let deadline: NodeJS.Timeout | undefined;
    // the advisor has its own timeout; this one is the floor's guarantee that a decision is made
    const late = new Promise<{ ok: false; code: 'timeout'; reason: string; model?: string }>((resolve) => {
      deadline = setTimeout(() => resolve({ ok: false, code: 'timeout', reason: `no answer within ${this.timeoutMs} ms` }), this.timeoutMs + 100);
    });
    try {
      const context = await this.context(incident, steps, signal);
      const r = await Promise.race([this.advisor.propose(incident, context, { signal }), late]);
      if (!r.ok) {
        await this.record(r.code !== 'unavailable', r.model, r.code === 'unavailable' ? r.reason : undefined);
        return { used: false, discarded: `${r.code}: ${r.reason}`.slice(0, 2000), outcome: r.code };
      }
      await this.record(true, r.model);
      const p = Proposal.safeParse(r.proposal);
      if (!p.success) return { used: false, outcome: 'invalid', discarded: `proposal has the wrong shape: ${p.error.issues[0]?.message ?? 'invalid'}` };
      if (PASSIVE_VERBS.includes(p.data.verb as ProposalVerb)) {
        return { used: false, outcome: 'passive', discarded: `advisor proposed ${p.data.verb} (${p.data.rationale.slice(0, 200)}); the runbook floor applies (reason: ${reason})` };
      }
      return { used: true, proposal: p.data, confidence: p.data.confidence };
    } catch (e) {
      return { used: false, outcome: 'error', discarded: `advisor failed: ${(e as Error).message}`.slice(0, 2000) };
    } finally {
      clearTimeout(deadline);
    }
  }

  /** The fleet slice around the incident: the guest, what it depends on and what depends on it. */
  private async context(incident: Incident, steps: readonly Step[], signal: AbortSignal): Promise<AdvisorContext> {
    const root = incident.rootCause.vmid;
    const around = new Set<number>();
    if (root !== undefined) {
      around.add(root);
      for (const d of this.fleet.deps.get(root) ?? []) around.add(d);
      for (const [v, ds] of this.fleet.deps) if (ds.includes(root)) around.add(v);
    }
    for (const s of incident.symptoms) around.add(s.vmid);
    const kv = this.bus.kv.fleetState;
    const guests = await Promise.all([...around].filter((v) => this.fleet.byVmid.has(v)).map(async (v) => {
      const spec = this.fleet.byVmid.get(v)!;
      const rec = (await kvGet(kv, kvKeys.guest(v), GuestRecord))?.value;
      return { vmid: v, name: spec.name, node: rec?.node ?? spec.node, layer: spec.layer, dependsOn: this.fleet.deps.get(v) ?? [], state: rec?.state ?? 'unknown', health: rec?.health ?? 'unknown', protected: spec.protected, role: spec.role };
    }));
    const nodes = await Promise.all(this.fleet.nodes.map(async (n) => ({ name: n.name, status: (await kvGet(kv, kvKeys.node(n.name), NodeRecord))?.value.status ?? 'unknown' })));
    return {
      guests,
      nodes,
      events: incident.timeline.slice(-20).map((t) => ({ type: 'timeline', ts: t.ts, summary: t.what })),
      allowedVerbs: this.fleet.policies.allowedVerbs,
      runbookAttempts: steps.map((s) => ({ verb: s.verb, result: `${s.status}${s.errorCode ? ` (${s.errorCode})` : ''}` })),
      signal,
    };
  }

  private async record(available: boolean, model?: string, reason?: string): Promise<void> {
    if (this.lastAvailable !== available) {
      if (!available) this.log.warn({ reason }, 'LLM advisor unavailable: healing by runbooks');
      else if (this.lastAvailable === false) this.log.info({ model }, 'LLM advisor available again');
    }
    this.lastAvailable = available;
    this.metrics?.advisorUp.set(available ? 1 : 0);
    const rec: AdvisorRecord = { available, checkedAt: new Date().toISOString() };
    if (model) rec.model = model;
    if (reason) rec.reason = reason.slice(0, 500);
    await kvPut(this.bus.kv.fleetState, kvKeys.advisor(), rec).catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not record advisor state'));
  }
}
