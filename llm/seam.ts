// The seam the decision agent talks to. An advisor only proposes: whatever it returns is
// untrusted, and the policy gate decides. `propose` never throws; every failure is a result with
// a stable code the caller records (and then the runbook floor applies).
import type { Incident } from '../bus/mod.ts';
import type { Proposal } from './proposal.ts';

/** One guest of the fleet slice around the incident. Names and roles are fleet data, not trusted. */
export interface SliceGuest {
  vmid: number;
  name: string;
  node: string;
  layer: number;
  dependsOn: readonly number[];
  state: string;
  health: string;
  protected: boolean;
  role?: string;
}

export interface SliceNode {
  name: string;
  status: string;
}

/** A recent fleet event, already summarised by the caller (log line, alert text, state change). */
export interface RecentEvent {
  type: string;
  ts: string;
  summary: string;
}

export interface RunbookAttempt {
  verb: string;
  result: string;
}

export interface AdvisorContext {
  /** Guests around the incident. A proposal may only target these (and their nodes). */
  guests: readonly SliceGuest[];
  /** Nodes the proposal may name (e.g. a migrate target). The guests' own nodes always count. */
  nodes?: readonly SliceNode[];
  events: readonly RecentEvent[];
  /** Action verbs the policy allows here; `notify` and `none` are always allowed. */
  allowedVerbs: readonly string[];
  runbookAttempts?: readonly RunbookAttempt[];
  /** Cancels the call (agent stopping); the advisor's own timeout applies as well. */
  signal?: AbortSignal;
}

export type AdvisorFailureCode =
  | 'unavailable' | 'timeout' | 'invalid-json' | 'schema' | 'unknown-verb' | 'forbidden-verb'
  | 'unknown-target' | 'too-large' | 'error';

export type AdvisorResult =
  | { ok: true; proposal: Proposal; latencyMs: number; model?: string }
  | {
    ok: false;
    code: AdvisorFailureCode;
    /** One line for the decision record: what was wrong, never the whole model output. */
    reason: string;
    latencyMs?: number;
    model?: string;
    /** The first few hundred characters of the model output, control characters removed. */
    excerpt?: string;
  };

export interface AdvisorAvailability {
  ok: boolean;
  /** Same as `ok`; the name the decision agent's seam reads. */
  available: boolean;
  model?: string;
  reason?: string;
}

export interface ProposeOptions {
  signal?: AbortSignal;
}

export interface Advisor {
  propose(incident: Incident, context: AdvisorContext, opts?: ProposeOptions): Promise<AdvisorResult>;
  available(): Promise<AdvisorAvailability>;
}

/** No model configured: the fleet heals by runbooks alone. */
export class NullAdvisor implements Advisor {
  constructor(private readonly why = 'no advisor configured') {}

  propose(): Promise<AdvisorResult> {
    return Promise.resolve({ ok: false, code: 'unavailable', reason: this.why, latencyMs: 0 });
  }

  available(): Promise<AdvisorAvailability> {
    return Promise.resolve({ ok: false, available: false, reason: this.why });
  }
}
