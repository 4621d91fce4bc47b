// LayeredBootMachine: boots a fleet by its dependency graph, not by layer barriers, so wall time
// approaches the critical path. A guest starts as soon as every guest it depends on is healthy,
// within `perNodeConcurrency` guests booting per node; it is up only when `waitHealthy` says so.
// A guest that keeps failing holds everything downstream of it; everything else still boots.
//
// Per guest and attempt the machine runs two steps through its one `guestSteps` driver (children.ts),
// `start:<vmid>:<attempt>` (startGuest) and `check:<vmid>:<attempt>` (waitHealthy), and arms a
// `GUEST.TIMEOUT` timer. Neither steps in flight nor timers are in the persisted snapshot, hence
// `RESUME` (see mod.ts).
import { setup, fromPromise } from 'xstate';
import { planBootWaves, type BootPlan } from './graph.ts';
import type { Progress } from './progress.ts';
import {
  begin, cancelRun, createPipeline, isSettled, rearm, stepDone, stepStarted, stepFailed, summarize, timedOut,
  type PipeCommand, type Pipeline, type PipelineSummary,
} from './pipeline.ts';
import { guestSteps, notBound, STEPS_ID, type StepDoneEvent, type StepFailedEvent, type StepStartedEvent } from './children.ts';

export interface BootGuestInput {
  vmid: number;
  node: string;
  layer: number;
  /** Resolved dependencies (the manifest's explicit list, else the layer below). */
  dependsOn: number[];
  /** Start plus health check, per attempt. */
  bootTimeoutMs: number;
  /** Expected boot time; only used to start the longest chains first. */
  expectedBootMs?: number;
}

export interface BootInput {
  workflowId: string;
  guests: BootGuestInput[];
  /** Healthy before the run: never started again, and they satisfy dependencies. */
  alreadyHealthy?: number[];
  perNodeConcurrency: number;
  /** Extra attempts after the first. */
  retries: number;
  /** Boot only this layer; its dependencies outside the layer must already be healthy. */
  onlyLayer?: number;
  dryRun?: boolean;
  /** Epoch ms the runner started the workflow; with `waitHealthy` returning `{ at }` it yields durationMs. */
  startedAt?: number;
}

export interface StartGuestInput { workflowId: string; vmid: number; node: string; attempt: number; actionId: string }
export interface WaitHealthyInput { workflowId: string; vmid: number; node: string; attempt: number; timeoutMs: number }
/** `at`: epoch ms the guest was seen healthy (optional). */
export type WaitHealthyOutput = { at?: number } | void;

export const BOOT_EVENTS = [
  'BOOT.PLANNED', 'GUEST.SKIPPED', 'GUEST.BLOCKED', 'GUEST.STARTING', 'GUEST.STARTED', 'GUEST.HEALTHY',
  'GUEST.RETRY', 'GUEST.FAILED', 'GUEST.HELD', 'LAYER.DONE', 'BOOT.DONE',
] as const;
export type BootEventName = (typeof BOOT_EVENTS)[number];

export interface BootSummary extends PipelineSummary {
  workflowId: string;
  dryRun: boolean;
  onlyLayer?: number;
  plan: BootPlan;
  /** Guests that could not start because a dependency outside this run is not healthy. */
  blocked: BootPlan['blocked'];
  durationMs?: number;
}

interface BootContext {
  workflowId: string;
  dryRun: boolean;
  onlyLayer?: number;
  startedAt?: number;
  plan: BootPlan;
  run: Pipeline;
}

export type BootEvent =
  | { type: 'RESUME' }
  /** `homeostat cancel`: start nothing more; what is in flight finishes. */
  | { type: 'CANCEL'; reason: string }
  | { type: 'GUEST.TIMEOUT'; vmid: number; attempt: number }
  | StepDoneEvent
  | StepFailedEvent
  | StepStartedEvent;

export const startActionId = (workflowId: string, vmid: number, attempt: number) => `${workflowId}:${vmid}:start:${attempt}`;

const bootSetup = setup({
  types: { input: {} as BootInput, context: {} as BootContext, events: {} as BootEvent, output: {} as BootSummary },
  actors: {
    startGuest: fromPromise<unknown, StartGuestInput>(notBound('startGuest')),
    waitHealthy: fromPromise<WaitHealthyOutput, WaitHealthyInput>(notBound('waitHealthy')),
    guestSteps,
  },
  actions: {
    emitProgress: (_args, _progress: Progress<BootEventName>) => {},
  },
  guards: {
    dryRun: ({ context }) => context.dryRun,
    settled: ({ context }) => isSettled(context.run),
  },
});

/** Runs one pipeline step (it returns the new pipeline) and turns its commands into xstate actions. */
const step = (fn: (run: Pipeline, event: BootEvent, out: PipeCommand[]) => Pipeline) =>
  bootSetup.enqueueActions(({ context, event, enqueue }) => {
    const out: PipeCommand[] = [];
    const run = fn(context.run, event, out);
    enqueue.assign({ run });
    for (const c of out) {
      if (c.do === 'emit') enqueue({ type: 'emitProgress', params: c.progress as Progress<BootEventName> });
      else if (c.do === 'cancel') enqueue.sendTo(STEPS_ID, { type: 'STEP.CANCEL', id: c.id });
      else if (c.do === 'arm') enqueue.raise({ type: 'GUEST.TIMEOUT', vmid: c.vmid, attempt: c.attempt }, { id: c.id, delay: c.delayMs });
      else if (c.do === 'disarm') enqueue.cancel(c.id);
      else if (c.step === 'start') {
        const { vmid, node, attempt } = c.guest;
        const input: StartGuestInput = { workflowId: context.workflowId, vmid, node, attempt, actionId: startActionId(context.workflowId, vmid, attempt) };
        // longest remaining chain first when the steps' line is full (StepQueue)
        enqueue.sendTo(STEPS_ID, { type: 'STEP.RUN', id: c.id, src: 'startGuest', input, priority: c.guest.rank });
      } else {
        const { vmid, node, attempt, timeoutMs } = c.guest;
        const input: WaitHealthyInput = { workflowId: context.workflowId, vmid, node, attempt, timeoutMs };
        enqueue.sendTo(STEPS_ID, { type: 'STEP.RUN', id: c.id, src: 'waitHealthy', input });
      }
    }
  });

function summary(context: BootContext): BootSummary {
  const s = summarize(context.run);
  const last = context.run.lastHealthyAt;
  return {
    workflowId: context.workflowId,
    dryRun: context.dryRun,
    ...(context.onlyLayer !== undefined ? { onlyLayer: context.onlyLayer } : {}),
    ...s,
    plan: context.plan,
    blocked: context.plan.blocked,
    ...(context.startedAt !== undefined && last !== undefined ? { durationMs: Math.max(0, last - context.startedAt) } : {}),
  };
}

export const LayeredBootMachine = bootSetup.createMachine({
  id: 'boot',
  context: ({ input }) => {
    const scope = input.onlyLayer === undefined ? input.guests : input.guests.filter((g) => g.layer === input.onlyLayer);
    const healthy = input.alreadyHealthy ?? [];
    return {
      workflowId: input.workflowId,
      dryRun: input.dryRun ?? false,
      ...(input.onlyLayer !== undefined ? { onlyLayer: input.onlyLayer } : {}),
      ...(input.startedAt !== undefined ? { startedAt: input.startedAt } : {}),
      plan: planBootWaves(scope, healthy),
      run: createPipeline(
        scope.map((g) => ({ vmid: g.vmid, node: g.node, layer: g.layer, dependsOn: g.dependsOn, timeoutMs: g.bootTimeoutMs, expectedMs: g.expectedBootMs })),
        { satisfied: healthy, skipped: healthy, perNodeConcurrency: input.perNodeConcurrency, retries: input.retries },
      ),
    };
  },
  initial: 'planning',
  states: {
    planning: {
      entry: { type: 'emitProgress', params: ({ context }) => ({ event: 'BOOT.PLANNED', detail: { ...context.plan, dryRun: context.dryRun } }) },
      always: [{ guard: 'dryRun', target: 'done' }, { target: 'booting' }],
    },
    booting: {
      // the driver never fails (a failing step comes back as STEP.FAILED), so no onError
      invoke: { id: STEPS_ID, src: 'guestSteps' },
      entry: step((run, _e, out) => begin(run, out)),
      always: { guard: 'settled', target: 'done' },
      on: {
        'STEP.STARTED': { actions: step((run, e, out) => (e.type === 'STEP.STARTED' ? stepStarted(run, e.id, out) : run)) },
        'STEP.DONE': { actions: step((run, e, out) => (e.type === 'STEP.DONE' ? stepDone(run, e.id, e.output, out) : run)) },
        'STEP.FAILED': { actions: step((run, e, out) => (e.type === 'STEP.FAILED' ? stepFailed(run, e.id, e.error, out) : run)) },
        'GUEST.TIMEOUT': { actions: step((run, e, out) => (e.type === 'GUEST.TIMEOUT' ? timedOut(run, e.vmid, e.attempt, out) : run)) },
        RESUME: { actions: step((run, _e, out) => rearm(run, out)) },
        CANCEL: { actions: step((run, e, out) => (e.type === 'CANCEL' ? cancelRun(run, e.reason, out) : run)) },
      },
    },
    done: {
      type: 'final',
      entry: { type: 'emitProgress', params: ({ context }) => ({ event: 'BOOT.DONE', detail: { ...summary(context) } }) },
    },
  },
  output: ({ context }) => summary(context),
});
