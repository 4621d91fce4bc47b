// ChaosExperimentMachine: steady state → inject → watch homeostat heal → steady state again, and
// rollbacks ALWAYS: every path out of `running` (success, failed hypothesis, ABORT, an actor error,
// a timeout, a runner restart) goes through `rollingBack` before `reporting`. The input is typed
// structurally so workflows/experiment.ts's `Experiment` can be passed as is.
import { setup, assign, and, fromCallback, fromPromise, type EventObject } from 'xstate';
import { errorText, type Progress } from './progress.ts';
import { ActorNotBoundError, notBound } from './children.ts';
import {
  chaosReport, faultActionId, flattenFaults, rollbackActionId,
  type ChaosContext, type ChaosExperimentInput, type ChaosFaultStep, type ChaosInput, type ChaosReport, type FaultRecord,
} from './chaos-model.ts';

export { faultActionId, rollbackActionId };
export type { ChaosExperimentInput, ChaosFaultStep, ChaosInput, ChaosReport, FaultRecord };

export interface CheckSteadyStateInput { workflowId: string; probes: unknown[]; phase: 'before' | 'after' }
export interface CheckSteadyStateOutput { ok: boolean; failures?: string[] }
export interface InjectFaultInput { workflowId: string; index: number; rep: number; fault: ChaosFaultStep; actionId: string }
/** `at`: epoch ms the fault took effect; `faultId`: e.g. the simulator's fault id, for rollback. */
export interface InjectFaultOutput { at: number; faultId?: string }
/** A callback actor: send `{ type: 'HEAL.OBSERVED', index, at }` per healed record. Must look at
 *  history since `injectedAt` (the bus stream), because a heal may land before it starts. */
export interface WatchHealInput { workflowId: string; faults: FaultRecord[] }
/** A callback actor: send `{ type: 'ABORT', reason }` when an abort condition trips. */
export interface WatchAbortInput { workflowId: string; abort: ChaosExperimentInput['abort']; targets: (string | number)[] }
export interface RunRollbacksInput { workflowId: string; rollbacks: unknown[]; faults: FaultRecord[]; actionId: string }

export const CHAOS_EVENTS = [
  'CHAOS.PLANNED', 'STEADY_STATE.OK', 'STEADY_STATE.FAILED', 'FAULT.INJECTED', 'FAULT.FAILED', 'FAULT.HEALED',
  'HEAL.TIMEOUT', 'CHAOS.ABORTED', 'ROLLBACK.STARTED', 'ROLLBACK.DONE', 'ROLLBACK.FAILED', 'CHAOS.REPORT',
] as const;
export type ChaosEventName = (typeof CHAOS_EVENTS)[number];

export type ChaosEvent =
  | { type: 'HEAL.OBSERVED'; index: number; at: number }
  | { type: 'ABORT'; reason?: string }
  | { type: 'RESUME' };

const notBoundCallback = (actor: string) => () => {
  throw new ActorNotBoundError(actor);
};

const chaosSetup = setup({
  types: { input: {} as ChaosInput, context: {} as ChaosContext, events: {} as ChaosEvent, output: {} as ChaosReport },
  actors: {
    checkSteadyState: fromPromise<CheckSteadyStateOutput, CheckSteadyStateInput>(notBound('checkSteadyState')),
    injectFault: fromPromise<InjectFaultOutput, InjectFaultInput>(notBound('injectFault')),
    watchHeal: fromCallback<EventObject, WatchHealInput>(notBoundCallback('watchHeal')),
    watchAbort: fromCallback<EventObject, WatchAbortInput>(notBoundCallback('watchAbort')),
    runRollbacks: fromPromise<unknown, RunRollbacksInput>(notBound('runRollbacks')),
  },
  actions: { emitProgress: (_args, _progress: Progress<ChaosEventName>) => {} },
  guards: {
    dryRun: ({ context }) => context.dryRun,
    allInjected: ({ context }) => context.cursor >= context.faults.length,
    allHealed: ({ context }) => context.faults.every((f) => !f.needsHeal || f.healedAt !== undefined),
    needsSpacing: ({ context }) => (context.faults[context.cursor]?.intervalMs ?? 0) > 0,
    steadyOk: (_args, output: CheckSteadyStateOutput) => output.ok === true,
  },
  delays: {
    experimentTimeout: ({ context }) => context.timeoutMs,
    healTimeout: ({ context }) => context.healTimeoutMs,
    spacing: ({ context }) => context.faults[context.cursor]?.intervalMs ?? 0,
  },
});

const emit = (event: ChaosEventName, detail?: (c: ChaosContext) => Record<string, unknown>) =>
  ({ type: 'emitProgress' as const, params: ({ context }: { context: ChaosContext }) => ({ event, ...(detail ? { detail: detail(context) } : {}) }) });

/** Stop the experiment: remember why, then roll back. */
const abort = (reason: (event: unknown) => string) => [
  chaosSetup.assign({ aborted: true, reason: ({ event }) => reason(event) }),
  emit('CHAOS.ABORTED', (c) => ({ reason: c.reason })),
];
const errorOf = (e: unknown) => errorText((e as { error?: unknown }).error);

export const ChaosExperimentMachine = chaosSetup.createMachine({
  id: 'chaos',
  context: ({ input }) => ({
    workflowId: input.workflowId,
    dryRun: input.dryRun ?? false,
    experiment: structuredClone(input.experiment),
    faults: flattenFaults(input.workflowId, input.experiment),
    cursor: 0,
    timeoutMs: input.experiment.abort?.timeoutMs ?? 600_000,
    healTimeoutMs: input.experiment.slo.mttrMs * (input.healTimeoutFactor ?? 2),
    aborted: false,
    rollback: { ran: false, ok: false },
  }),
  initial: 'planning',
  states: {
    planning: {
      entry: emit('CHAOS.PLANNED', (c) => ({ experiment: c.experiment.name, dryRun: c.dryRun, faults: c.faults, rollbacks: c.experiment.rollbacks, healTimeoutMs: c.healTimeoutMs })),
      always: [{ guard: 'dryRun', target: 'done' }, { target: 'running' }],
    },
    running: {
      invoke: {
        src: 'watchAbort',
        input: ({ context }) => ({ workflowId: context.workflowId, abort: context.experiment.abort, targets: context.faults.map((f) => f.target) }),
        onError: { target: 'rollingBack', actions: abort((e) => `abort watcher failed: ${errorOf(e)}`) },
      },
      after: { experimentTimeout: { target: 'rollingBack', actions: abort(() => 'experiment timed out') } },
      on: {
        ABORT: { target: 'rollingBack', actions: abort((e) => (e as { reason?: string }).reason ?? 'aborted') },
        // Sent by the runner right after restoring a snapshot: the timeline is broken, undo.
        RESUME: { target: 'rollingBack', actions: abort(() => 'the runner restarted mid-experiment') },
        'HEAL.OBSERVED': {
          actions: [
            assign({
              faults: ({ context, event }) => context.faults.map((f) => {
                if (f.index !== event.index || f.injectedAt === undefined || f.healedAt !== undefined) return f;
                const mttrMs = Math.max(0, event.at - f.injectedAt);
                return { ...f, healedAt: event.at, mttrMs, withinSlo: mttrMs <= f.sloMs };
              }),
            }),
            { type: 'emitProgress', params: ({ context, event }) => ({ event: 'FAULT.HEALED', detail: { ...context.faults[event.index] } }) },
          ],
        },
      },
      initial: 'checkingSteadyState',
      states: {
        checkingSteadyState: {
          invoke: {
            src: 'checkSteadyState',
            input: ({ context }) => ({ workflowId: context.workflowId, probes: context.experiment.steadyState, phase: 'before' as const }),
            onDone: [
              { guard: { type: 'steadyOk', params: ({ event }) => event.output }, target: 'injecting', actions: [assign({ steadyStateBefore: true }), emit('STEADY_STATE.OK', () => ({ phase: 'before' }))] },
              {
                target: '#chaos.rollingBack',
                actions: [
                  assign({ steadyStateBefore: false }),
                  { type: 'emitProgress', params: ({ event }) => ({ event: 'STEADY_STATE.FAILED', detail: { phase: 'before', failures: event.output.failures ?? [] } }) },
                  ...abort(() => 'steady state did not hold before injection'),
                ],
              },
            ],
            onError: { target: '#chaos.rollingBack', actions: abort((e) => `steady-state check failed: ${errorOf(e)}`) },
          },
        },
        injecting: {
          initial: 'next',
          states: {
            next: {
              always: [
                { guard: and(['allInjected', 'allHealed']), target: '#chaos.running.verifyingSteadyState' },
                { guard: 'allInjected', target: '#chaos.running.observing' },
                { guard: 'needsSpacing', target: 'pausing' },
                { target: 'injectingFault' },
              ],
            },
            pausing: { after: { spacing: 'injectingFault' } },
            injectingFault: {
              invoke: {
                src: 'injectFault',
                input: ({ context }) => {
                  const f = context.faults[context.cursor];
                  return { workflowId: context.workflowId, index: f.index, rep: f.rep, fault: context.experiment.method[f.step], actionId: f.actionId };
                },
                onDone: {
                  target: 'next',
                  actions: [
                    assign({
                      faults: ({ context, event }) => context.faults.map((f) => (f.index === context.cursor ? { ...f, injectedAt: event.output.at, ...(event.output.faultId ? { faultId: event.output.faultId } : {}) } : f)),
                      cursor: ({ context }) => context.cursor + 1,
                    }),
                    { type: 'emitProgress', params: ({ context }) => ({ event: 'FAULT.INJECTED', detail: { ...context.faults[context.cursor - 1] } }) },
                  ],
                },
                onError: {
                  target: '#chaos.rollingBack',
                  actions: [
                    assign({ faults: ({ context, event }) => context.faults.map((f) => (f.index === context.cursor ? { ...f, error: errorText(event.error) } : f)) }),
                    { type: 'emitProgress', params: ({ context }) => ({ event: 'FAULT.FAILED', detail: { ...context.faults[context.cursor] } }) },
                    ...abort((e) => `injection failed: ${errorOf(e)}`),
                  ],
                },
              },
            },
          },
        },
        observing: {
          invoke: {
            src: 'watchHeal',
            input: ({ context }) => ({ workflowId: context.workflowId, faults: context.faults.filter((f) => f.needsHeal && f.healedAt === undefined) }),
            onError: { target: '#chaos.rollingBack', actions: abort((e) => `heal watcher failed: ${errorOf(e)}`) },
          },
          always: { guard: 'allHealed', target: 'verifyingSteadyState' },
          after: {
            healTimeout: {
              target: '#chaos.rollingBack',
              actions: [
                assign({ reason: ({ context }) => `not healed within ${context.healTimeoutMs} ms (SLO ${context.experiment.slo.mttrMs} ms)` }),
                emit('HEAL.TIMEOUT', (c) => ({ unhealed: c.faults.filter((f) => f.needsHeal && f.healedAt === undefined).map((f) => f.index) })),
              ],
            },
          },
        },
        verifyingSteadyState: {
          invoke: {
            src: 'checkSteadyState',
            input: ({ context }) => ({ workflowId: context.workflowId, probes: context.experiment.steadyState, phase: 'after' as const }),
            onDone: [
              { guard: { type: 'steadyOk', params: ({ event }) => event.output }, target: '#chaos.rollingBack', actions: [assign({ steadyStateAfter: true }), emit('STEADY_STATE.OK', () => ({ phase: 'after' }))] },
              {
                target: '#chaos.rollingBack',
                actions: [
                  assign({ steadyStateAfter: false, reason: 'steady state not restored after the heal' }),
                  { type: 'emitProgress', params: ({ event }) => ({ event: 'STEADY_STATE.FAILED', detail: { phase: 'after', failures: event.output.failures ?? [] } }) },
                ],
              },
            ],
            onError: { target: '#chaos.rollingBack', actions: assign({ steadyStateAfter: false, reason: ({ event }) => `steady-state check failed: ${errorText(event.error)}` }) },
          },
        },
      },
    },
    rollingBack: {
      entry: emit('ROLLBACK.STARTED', (c) => ({ rollbacks: c.experiment.rollbacks })),
      // No RESUME handler: after a restore xstate re-runs this invoke itself (same actionId).
      invoke: {
        src: 'runRollbacks',
        input: ({ context }) => ({ workflowId: context.workflowId, rollbacks: context.experiment.rollbacks, faults: context.faults, actionId: rollbackActionId(context.workflowId) }),
        onDone: { target: 'reporting', actions: [assign({ rollback: { ran: true, ok: true } }), emit('ROLLBACK.DONE')] },
        onError: {
          target: 'reporting',
          actions: [assign({ rollback: ({ event }) => ({ ran: true, ok: false, error: errorText(event.error) }) }), emit('ROLLBACK.FAILED', (c) => ({ error: c.rollback.error }))],
        },
      },
    },
    reporting: {
      entry: emit('CHAOS.REPORT', (c) => ({ ...chaosReport(c) })),
      always: 'done',
    },
    done: { type: 'final' },
  },
  output: ({ context }) => chaosReport(context),
});
