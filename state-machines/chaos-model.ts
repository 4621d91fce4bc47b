// The data of a chaos run: the experiment as the machine sees it (structural, so the zod-parsed
// `Experiment` of workflows/experiment.ts fits), one record per injection, and the report.
export interface ChaosFaultStep {
  fault: string;
  target: string | number;
  durationMs?: number;
  params?: Record<string, string | number | boolean>;
  repeat?: number;
  intervalMs?: number;
  /** 'none': nothing to wait for (e.g. an API brownout); 'healed' | 'held': wait for HEAL.OBSERVED. */
  expect?: 'healed' | 'held' | 'none';
  healTarget?: number;
}

export interface ChaosExperimentInput {
  name: string;
  steadyState: unknown[];
  method: ChaosFaultStep[];
  rollbacks: unknown[];
  abort?: { timeoutMs?: number; maxGuestsDown?: number };
  slo: { mttrMs: number };
}

export interface ChaosInput {
  workflowId: string;
  experiment: ChaosExperimentInput;
  dryRun?: boolean;
  /** How long to wait for heals: SLO × this (default 2). Past it the experiment fails, not aborts. */
  healTimeoutFactor?: number;
}

/** One injection. A step with `repeat: n` becomes n records; only the last one waits for a heal. */
export interface FaultRecord {
  index: number;
  step: number;
  rep: number;
  kind: string;
  target: string | number;
  expect: 'healed' | 'held' | 'none';
  healTarget?: number;
  intervalMs: number;
  needsHeal: boolean;
  sloMs: number;
  actionId: string;
  injectedAt?: number;
  faultId?: string;
  healedAt?: number;
  mttrMs?: number;
  withinSlo?: boolean;
  error?: string;
}

export interface ChaosReport {
  workflowId: string;
  experiment: string;
  dryRun: boolean;
  passed: boolean;
  aborted: boolean;
  reason?: string;
  steadyStateBefore?: boolean;
  steadyStateAfter?: boolean;
  faults: { index: number; kind: string; target: string | number; rep: number; expect: string; injectedAt?: number; healedAt?: number; mttrMs?: number; sloMs: number; withinSlo: boolean; error?: string }[];
  rollback: { ran: boolean; ok: boolean; error?: string };
}

export interface ChaosContext {
  workflowId: string;
  dryRun: boolean;
  experiment: ChaosExperimentInput;
  faults: FaultRecord[];
  cursor: number;
  timeoutMs: number;
  healTimeoutMs: number;
  aborted: boolean;
  reason?: string;
  steadyStateBefore?: boolean;
  steadyStateAfter?: boolean;
  rollback: { ran: boolean; ok: boolean; error?: string };
}

export const faultActionId = (workflowId: string, index: number) => `${workflowId}:fault:${index}`;
export const rollbackActionId = (workflowId: string) => `${workflowId}:rollback`;

export function flattenFaults(workflowId: string, e: ChaosExperimentInput): FaultRecord[] {
  const out: FaultRecord[] = [];
  e.method.forEach((m, step) => {
    const repeat = Math.max(1, m.repeat ?? 1);
    for (let rep = 0; rep < repeat; rep++) {
      const expect = m.expect ?? 'healed';
      const index = out.length;
      out.push({
        index, step, rep, kind: m.fault, target: m.target, expect, intervalMs: rep === 0 ? 0 : m.intervalMs ?? 0,
        ...(m.healTarget !== undefined ? { healTarget: m.healTarget } : {}),
        needsHeal: expect !== 'none' && rep === repeat - 1, sloMs: e.slo.mttrMs, actionId: faultActionId(workflowId, index),
      });
    }
  });
  return out;
}

export function chaosReport(c: ChaosContext): ChaosReport {
  const faults = c.faults.map((f) => ({
    index: f.index, kind: f.kind, target: f.target, rep: f.rep, expect: f.expect,
    ...(f.injectedAt !== undefined ? { injectedAt: f.injectedAt } : {}),
    ...(f.healedAt !== undefined ? { healedAt: f.healedAt } : {}),
    ...(f.mttrMs !== undefined ? { mttrMs: f.mttrMs } : {}),
    sloMs: f.sloMs,
    withinSlo: f.injectedAt !== undefined && (f.needsHeal ? f.withinSlo === true : true),
    ...(f.error ? { error: f.error } : {}),
  }));
  const passed = !c.dryRun && !c.aborted && !c.reason && c.steadyStateAfter === true && c.rollback.ok && faults.every((f) => f.withinSlo);
  return {
    workflowId: c.workflowId, experiment: c.experiment.name, dryRun: c.dryRun, passed, aborted: c.aborted,
    ...(c.reason ? { reason: c.reason } : {}),
    ...(c.steadyStateBefore !== undefined ? { steadyStateBefore: c.steadyStateBefore } : {}),
    ...(c.steadyStateAfter !== undefined ? { steadyStateAfter: c.steadyStateAfter } : {}),
    faults, rollback: c.rollback,
  };
}
