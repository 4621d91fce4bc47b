// The seam for the LLM advisor (llm/, issue 7). The decision agent takes an `Advisor` from
// ctx.services.advisor and asks it only when the runbook has no confident answer. Whatever comes
// back is untrusted data: checked here for shape, then gated like any other proposal.
import { z } from 'zod';
import { kvKeys, kvPut, type Bus, type Incident, type Logger } from '../../bus/mod.ts';
import type { AdvisorRecord } from '../../bus/mod.ts';
import type { Step } from './runbook.ts';

/** What the decision agent tells the advisor besides the incident. All values are data. */
export interface AdvisorContext {
  /** Why the runbook is not confident (unknown failure mode, repeated failure, …). */
  reason: string;
  steps: readonly Pick<Step, 'verb' | 'status' | 'errorCode'>[];
  allowedVerbs: readonly string[];
  runbookVerbs: readonly string[];
  guest?: { vmid: number; name: string; node: string; layer: number; protected: boolean; dependsOn: number[] };
  signal?: AbortSignal;
}

export interface AdvisorProposal {
  verb: string;
  vmid?: number;
  rationale: string;
  confidence: number;
  expectedEffect?: string;
  verification?: string;
}

export type AdvisorResult =
  | { ok: true; proposal: AdvisorProposal; model?: string }
  | { ok: false; reason: string; unavailable?: boolean; model?: string };

export interface Advisor {
  propose(incident: Incident, context: AdvisorContext): Promise<AdvisorResult>;
  /** Optional health check for `status`; absent = assumed available until a call says otherwise. */
  available?(): Promise<{ available: boolean; model?: string; reason?: string }>;
}

const ProposalShape = z.object({
  verb: z.string().min(1).max(40),
  vmid: z.number().int().optional(),
  rationale: z.string().max(2000),
  confidence: z.number().min(0).max(1),
}).passthrough();

export type Consultation =
  | { used: true; proposal: AdvisorProposal; confidence: number; discarded?: string }
  | { used: false; discarded: string };

function isAdvisor(x: unknown): x is Advisor {
  return typeof x === 'object' && x !== null && typeof (x as Advisor).propose === 'function';
}

/** Wraps the optional advisor: timeout, shape check, availability record in fleet-state. */
export class AdvisorSeam {
  private readonly advisor?: Advisor;
  private lastAvailable: boolean | undefined;

  constructor(service: unknown, private readonly bus: Bus, private readonly log: Logger, private readonly timeoutMs: number) {
    this.advisor = isAdvisor(service) ? service : undefined;
  }

  get configured(): boolean {
    return this.advisor !== undefined;
  }

  async init(): Promise<void> {
    if (!this.advisor) return this.record(false, undefined, 'no advisor configured: healing by runbooks');
    try {
      const a = this.advisor.available ? await this.advisor.available() : { available: true };
      await this.record(a.available, a.model, a.reason);
    } catch (e) {
      await this.record(false, undefined, (e as Error).message);
    }
  }

  async consult(incident: Incident, context: Omit<AdvisorContext, 'signal'>): Promise<Consultation> {
    if (!this.advisor) return { used: false, discarded: 'no advisor configured' };
    const ctl = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<AdvisorResult>((resolve) => {
      timer = setTimeout(() => {
        ctl.abort(new Error('advisor timeout'));
        resolve({ ok: false, reason: `no answer within ${this.timeoutMs} ms` });
      }, this.timeoutMs);
    });
    let r: AdvisorResult;
    try {
      r = await Promise.race([this.advisor.propose(incident, { ...context, signal: ctl.signal }), late]);
    } catch (e) {
      r = { ok: false, reason: `advisor failed: ${(e as Error).message}`, unavailable: true };
    } finally {
      clearTimeout(timer);
    }
    if (!r.ok) {
      await this.record(!r.unavailable, r.model, r.reason);
      return { used: false, discarded: r.reason.slice(0, 500) };
    }
    await this.record(true, r.model);
    const shape = ProposalShape.safeParse(r.proposal);
    if (!shape.success) return { used: false, discarded: `proposal has the wrong shape: ${shape.error.issues[0]?.message ?? 'invalid'}` };
    return { used: true, proposal: r.proposal, confidence: shape.data.confidence };
  }

  private async record(available: boolean, model?: string, reason?: string): Promise<void> {
    if (this.lastAvailable !== available) {
      if (!available) this.log.warn({ reason }, 'LLM advisor unavailable: healing by runbooks');
      else if (this.lastAvailable === false) this.log.info({ model }, 'LLM advisor available again');
    }
    this.lastAvailable = available;
    const rec: AdvisorRecord = { available, checkedAt: new Date().toISOString() };
    if (model) rec.model = model;
    if (reason) rec.reason = reason.slice(0, 500);
    await kvPut(this.bus.kv.fleetState, kvKeys.advisor(), rec).catch((e: unknown) => this.log.warn({ err: (e as Error).message }, 'could not record advisor state'));
  }
}
