// Binds each machine to its activities for one run, and says what a finished run's output means.
import type { AnyStateMachine } from 'xstate';
import {
  ChaosExperimentMachine, GracefulShutdownMachine, LayeredBootMachine, NodeFailoverMachine, stepsDriver,
  type BootSummary, type ChaosReport, type FailoverReport, type Progress, type ShutdownSummary,
} from '../state-machines/mod.ts';
import { chaosActors } from './chaos-activities.ts';
import type { RunContext, WorkflowDeps, WorkflowKind } from './deps.ts';
import { failoverActors } from './failover-activities.ts';
import { bootActors, shutdownActors } from './guest-activities.ts';
import type { WorkflowStatus } from './runner.ts';

export function buildMachine(d: WorkflowDeps, run: RunContext, emit: (p: Progress) => void): AnyStateMachine {
  const actions = { emitProgress: (_: unknown, p: Progress) => emit(p) };
  // every step that acts waits for a place under the agent's bound; a health wait only watches
  const guestSteps = stepsDriver({ queue: d.steps, unbounded: ['waitHealthy'] });
  switch (run.kind) {
    case 'boot':
      return LayeredBootMachine.provide({ actors: { ...bootActors(d, run), guestSteps }, actions: actions as never });
    case 'shutdown':
      return GracefulShutdownMachine.provide({ actors: { ...shutdownActors(d, run), guestSteps }, actions: actions as never });
    case 'failover':
      return NodeFailoverMachine.provide({ actors: { ...failoverActors(d, run), guestSteps }, actions: actions as never });
    case 'chaos':
      return ChaosExperimentMachine.provide({ actors: chaosActors(d, run), actions: actions as never });
  }
}

/** `stored` is what the agent kept with the record: guests it held before the machine started. */
export function statusOf(kind: WorkflowKind, output: unknown, stored: unknown): WorkflowStatus {
  const preHeld = ((stored as { held?: unknown[] } | undefined)?.held ?? []).length;
  switch (kind) {
    case 'boot': {
      const o = output as BootSummary;
      if (o.dryRun) return 'done';
      if (o.cancelled) return 'aborted';
      return o.failed.length || o.held.length || o.blocked.length ? 'failed' : 'done';
    }
    case 'shutdown': {
      const o = output as ShutdownSummary;
      if (o.dryRun) return 'done';
      if (o.cancelled) return 'aborted';
      return o.stuck.length || o.held.length || preHeld ? 'failed' : 'done';
    }
    case 'failover': {
      const o = output as FailoverReport;
      if (o.aborted) return 'aborted';
      return o.failed.length || o.unplaced.length || o.held.length || o.verification?.ok === false ? 'failed' : 'done';
    }
    case 'chaos': {
      const o = output as ChaosReport;
      if (o.dryRun || o.passed) return 'done';
      return o.aborted ? 'aborted' : 'failed';
    }
  }
}
