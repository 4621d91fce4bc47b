// NodeFailoverMachine: confirm a node is really gone, fence it, then recover its guests on the
// survivors in dependency order. Recovery lives only in the `recovering` state, and the only way
// into it is `confirming` (fence delay elapsed, then `confirmFence` said offline) followed by a
// successful `fenceNode`: a guest that might still run elsewhere is never started twice.
import { setup, assign, fromPromise } from 'xstate';
import { planBootWaves } from './graph.ts';
import { errorText, type Progress } from './progress.ts';
import {
  begin, createPipeline, isSettled, rearm, stepDone, stepStarted, stepFailed, summarize, timedOut,
  type PipeCommand, type Pipeline,
} from './pipeline.ts';
import { guestSteps, notBound, STEPS_ID, type StepDoneEvent, type StepFailedEvent, type StepStartedEvent } from './children.ts';
import type { WaitHealthyInput, WaitHealthyOutput } from './boot.ts';

export interface FailoverGuestInput {
  vmid: number;
  layer: number;
  /** Dependencies not on the failed node are assumed up (they run on survivors). */
  dependsOn: number[];
  healthTimeoutMs?: number;
}

export interface FailoverInput {
  workflowId: string;
  node: string;
  guests: FailoverGuestInput[];
  survivors: { node: string; freeSlots: number }[];
  fenceDelayMs: number;
  healthTimeoutMs?: number;
  perNodeConcurrency?: number;
  retries?: number;
}

export interface ConfirmFenceInput { workflowId: string; node: string }
/** `offline`: /cluster/status shows the node offline / out of quorum. */
export interface ConfirmFenceOutput { offline: boolean; detail?: string }
export interface FenceNodeInput { workflowId: string; node: string; actionId: string }
export interface RecoverGuestInput { workflowId: string; vmid: number; from: string; to: string; attempt: number; actionId: string }
export interface VerifyRecoveryInput { workflowId: string; node: string; recovered: { vmid: number; to: string }[] }
/** `problems`: e.g. a guest running twice, or not running where it was recovered to. */
export interface VerifyRecoveryOutput { ok: boolean; problems?: string[] }

export const FAILOVER_EVENTS = [
  'FAILOVER.PLANNED', 'FENCE.CONFIRMING', 'FENCE.CONFIRMED', 'NODE.FENCED', 'GUEST.PLACED', 'GUEST.UNPLACED',
  'GUEST.BLOCKED', 'GUEST.STARTING', 'GUEST.STARTED', 'GUEST.HEALTHY', 'GUEST.RETRY', 'GUEST.FAILED', 'GUEST.HELD',
  'GUEST.SKIPPED', 'LAYER.DONE', 'FAILOVER.VERIFIED', 'FAILOVER.ABORTED', 'FAILOVER.DONE',
] as const;
export type FailoverEventName = (typeof FAILOVER_EVENTS)[number];

export interface Placement {
  placed: { vmid: number; to: string }[];
  /** No survivor had a free slot. */
  unplaced: number[];
  /** Not placed because something it depends on could not be placed. */
  held: number[];
}

/** Lower layers first (dependencies before dependents); each guest goes to the survivor with the
 *  most free slots, ties broken by node name, so the same input always gives the same placement. */
export function placeGuests(guests: readonly FailoverGuestInput[], survivors: readonly { node: string; freeSlots: number }[]): Placement {
  const free = new Map(survivors.map((s) => [s.node, Math.max(0, s.freeSlots)]));
  const listed = new Set(guests.map((g) => g.vmid));
  const layerOf = new Map(guests.map((g) => [g.vmid, g.layer]));
  const order = planBootWaves(guests.map((g) => ({ ...g, dependsOn: g.dependsOn.filter((d) => listed.has(d)) })))
    .waves.flatMap((w) => [...w].sort((a, b) => layerOf.get(a)! - layerOf.get(b)! || a - b));
  const out: Placement = { placed: [], unplaced: [], held: [] };
  const ok = new Set<number>();
  for (const vmid of order) {
    const g = guests.find((x) => x.vmid === vmid)!;
    if (g.dependsOn.some((d) => listed.has(d) && !ok.has(d))) {
      out.held.push(vmid);
      continue;
    }
    const best = [...free].filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))[0];
    if (!best) {
      out.unplaced.push(vmid);
      continue;
    }
    free.set(best[0], best[1] - 1);
    ok.add(vmid);
    out.placed.push({ vmid, to: best[0] });
  }
  out.unplaced.sort((a, b) => a - b);
  out.held.sort((a, b) => a - b);
  return out;
}

export interface FailoverReport {
  workflowId: string;
  node: string;
  aborted: boolean;
  reason?: string;
  fenceConfirmed: boolean;
  fenced: boolean;
  recovered: { vmid: number; to: string }[];
  failed: number[];
  unplaced: number[];
  held: number[];
  reasons: Record<string, string>;
  verification?: VerifyRecoveryOutput & { error?: string };
}

interface FailoverContext {
  workflowId: string;
  node: string;
  fenceDelayMs: number;
  placement: Placement;
  run: Pipeline;
  fenceConfirmed: boolean;
  fenced: boolean;
  aborted: boolean;
  reason?: string;
  verification?: VerifyRecoveryOutput & { error?: string };
}

export type FailoverEvent =
  | { type: 'NODE.REACHABLE' }
  | { type: 'RESUME' }
  | { type: 'GUEST.TIMEOUT'; vmid: number; attempt: number }
  | StepDoneEvent
  | StepFailedEvent
  | StepStartedEvent;

export const fenceActionId = (workflowId: string, node: string) => `${workflowId}:${node}:fence`;
export const recoverActionId = (workflowId: string, vmid: number, attempt: number) => `${workflowId}:${vmid}:recover:${attempt}`;

const failoverSetup = setup({
  types: { input: {} as FailoverInput, context: {} as FailoverContext, events: {} as FailoverEvent, output: {} as FailoverReport },
  actors: {
    confirmFence: fromPromise<ConfirmFenceOutput, ConfirmFenceInput>(notBound('confirmFence')),
    fenceNode: fromPromise<unknown, FenceNodeInput>(notBound('fenceNode')),
    recoverGuest: fromPromise<unknown, RecoverGuestInput>(notBound('recoverGuest')),
    waitHealthy: fromPromise<WaitHealthyOutput, WaitHealthyInput>(notBound('waitHealthy')),
    verifyRecovery: fromPromise<VerifyRecoveryOutput, VerifyRecoveryInput>(notBound('verifyRecovery')),
    guestSteps,
  },
  actions: { emitProgress: (_args, _progress: Progress<FailoverEventName>) => {} },
  guards: {
    offline: (_args, output: ConfirmFenceOutput | undefined) => output?.offline === true,
    settled: ({ context }) => isSettled(context.run),
  },
  delays: { fenceDelay: ({ context }) => context.fenceDelayMs },
});

const step = (fn: (run: Pipeline, event: FailoverEvent, out: PipeCommand[]) => Pipeline) =>
  failoverSetup.enqueueActions(({ context, event, enqueue }) => {
    const out: PipeCommand[] = [];
    const run = fn(context.run, event, out);
    enqueue.assign({ run });
    const { workflowId, node: from } = context;
    for (const c of out) {
      if (c.do === 'emit') enqueue({ type: 'emitProgress', params: c.progress as Progress<FailoverEventName> });
      else if (c.do === 'cancel') enqueue.sendTo(STEPS_ID, { type: 'STEP.CANCEL', id: c.id });
      else if (c.do === 'arm') enqueue.raise({ type: 'GUEST.TIMEOUT', vmid: c.vmid, attempt: c.attempt }, { id: c.id, delay: c.delayMs });
      else if (c.do === 'disarm') enqueue.cancel(c.id);
      else if (c.step === 'start') {
        const { vmid, node: to, attempt } = c.guest;
        const input: RecoverGuestInput = { workflowId, vmid, from, to, attempt, actionId: recoverActionId(workflowId, vmid, attempt) };
        enqueue.sendTo(STEPS_ID, { type: 'STEP.RUN', id: c.id, src: 'recoverGuest', input, priority: c.guest.rank });
      } else {
        const { vmid, node, attempt, timeoutMs } = c.guest;
        const input: WaitHealthyInput = { workflowId, vmid, node, attempt, timeoutMs };
        enqueue.sendTo(STEPS_ID, { type: 'STEP.RUN', id: c.id, src: 'waitHealthy', input });
      }
    }
  });

const abortWith = (reason: (e: unknown) => string) =>
  failoverSetup.assign({ reason: ({ event }) => reason((event as { error?: unknown; output?: unknown }).error ?? (event as { output?: unknown }).output) });

function report(c: FailoverContext): FailoverReport {
  const s = summarize(c.run);
  const to = new Map(c.placement.placed.map((p) => [p.vmid, p.to]));
  return {
    workflowId: c.workflowId, node: c.node, aborted: c.aborted, ...(c.reason ? { reason: c.reason } : {}),
    fenceConfirmed: c.fenceConfirmed, fenced: c.fenced,
    recovered: s.healthy.map((vmid) => ({ vmid, to: to.get(vmid)! })),
    failed: s.failed,
    unplaced: [...c.placement.unplaced].sort((a, b) => a - b),
    held: [...new Set([...s.held, ...c.placement.held])].sort((a, b) => a - b),
    reasons: s.reasons,
    ...(c.verification ? { verification: c.verification } : {}),
  };
}

export const NodeFailoverMachine = failoverSetup.createMachine({
  id: 'failover',
  context: ({ input }) => {
    const placement = placeGuests(input.guests, input.survivors);
    const listed = new Set(input.guests.map((g) => g.vmid));
    const to = new Map(placement.placed.map((p) => [p.vmid, p.to]));
    const placed = input.guests.filter((g) => to.has(g.vmid));
    return {
      workflowId: input.workflowId,
      node: input.node,
      fenceDelayMs: input.fenceDelayMs,
      placement,
      fenceConfirmed: false,
      fenced: false,
      aborted: false,
      run: createPipeline(
        placed.map((g) => ({ vmid: g.vmid, node: to.get(g.vmid)!, layer: g.layer, dependsOn: g.dependsOn.filter((d) => listed.has(d)), timeoutMs: g.healthTimeoutMs ?? input.healthTimeoutMs ?? 60_000 })),
        { satisfied: [], skipped: [], perNodeConcurrency: input.perNodeConcurrency ?? 4, retries: input.retries ?? 0 },
      ),
    };
  },
  initial: 'confirming',
  states: {
    confirming: {
      entry: [
        { type: 'emitProgress', params: ({ context }) => ({ event: 'FAILOVER.PLANNED', node: context.node, detail: { ...context.placement } }) },
        { type: 'emitProgress', params: ({ context }) => ({ event: 'FENCE.CONFIRMING', node: context.node, detail: { fenceDelayMs: context.fenceDelayMs } }) },
      ],
      on: { 'NODE.REACHABLE': { target: 'aborted', actions: assign({ reason: 'node became reachable again during the fence delay' }) } },
      initial: 'waiting',
      states: {
        waiting: {
          after: { fenceDelay: 'checking' },
          // The delay timer is not in a persisted snapshot: wait the full delay again, the safe side.
          on: { RESUME: { target: 'waiting', reenter: true } },
        },
        checking: {
          invoke: {
            src: 'confirmFence',
            input: ({ context }) => ({ workflowId: context.workflowId, node: context.node }),
            onDone: [
              {
                guard: { type: 'offline', params: ({ event }) => event.output },
                target: '#failover.fencing',
                actions: [assign({ fenceConfirmed: true }), { type: 'emitProgress', params: ({ context, event }) => ({ event: 'FENCE.CONFIRMED', node: context.node, detail: { ...event.output } }) }],
              },
              { target: '#failover.aborted', actions: abortWith((o) => `cluster does not show the node offline${(o as ConfirmFenceOutput | undefined)?.detail ? `: ${(o as ConfirmFenceOutput).detail}` : ''}`) },
            ],
            onError: { target: '#failover.aborted', actions: abortWith((e) => `could not confirm the node is gone: ${errorText(e)}`) },
          },
        },
      },
    },
    fencing: {
      invoke: {
        src: 'fenceNode',
        input: ({ context }) => ({ workflowId: context.workflowId, node: context.node, actionId: fenceActionId(context.workflowId, context.node) }),
        onDone: { target: 'recovering', actions: [assign({ fenced: true }), { type: 'emitProgress', params: ({ context }) => ({ event: 'NODE.FENCED', node: context.node }) }] },
        onError: { target: 'aborted', actions: abortWith((e) => `fencing failed: ${errorText(e)}`) },
      },
    },
    recovering: {
      // the driver never fails (a failing step comes back as STEP.FAILED), so no onError
      invoke: { id: STEPS_ID, src: 'guestSteps' },
      entry: [
        failoverSetup.enqueueActions(({ context, enqueue }) => {
          for (const p of context.placement.placed) enqueue({ type: 'emitProgress', params: { event: 'GUEST.PLACED', vmid: p.vmid, node: p.to, detail: { from: context.node, to: p.to } } });
          for (const vmid of context.placement.unplaced) enqueue({ type: 'emitProgress', params: { event: 'GUEST.UNPLACED', vmid, detail: { reason: 'no survivor has a free slot' } } });
          for (const vmid of context.placement.held) enqueue({ type: 'emitProgress', params: { event: 'GUEST.HELD', vmid, detail: { reason: 'a dependency could not be placed' } } });
        }),
        step((run, _e, out) => begin(run, out)),
      ],
      always: { guard: 'settled', target: 'verifying' },
      on: {
        'STEP.STARTED': { actions: step((run, e, out) => (e.type === 'STEP.STARTED' ? stepStarted(run, e.id, out) : run)) },
        'STEP.DONE': { actions: step((run, e, out) => (e.type === 'STEP.DONE' ? stepDone(run, e.id, e.output, out) : run)) },
        'STEP.FAILED': { actions: step((run, e, out) => (e.type === 'STEP.FAILED' ? stepFailed(run, e.id, e.error, out) : run)) },
        'GUEST.TIMEOUT': { actions: step((run, e, out) => (e.type === 'GUEST.TIMEOUT' ? timedOut(run, e.vmid, e.attempt, out) : run)) },
        RESUME: { actions: step((run, _e, out) => rearm(run, out)) },
      },
    },
    verifying: {
      invoke: {
        src: 'verifyRecovery',
        input: ({ context }) => ({ workflowId: context.workflowId, node: context.node, recovered: report(context).recovered }),
        onDone: {
          target: 'done',
          actions: [
            assign({ verification: ({ event }) => ({ ok: event.output.ok, ...(event.output.problems ? { problems: event.output.problems } : {}) }) }),
            { type: 'emitProgress', params: ({ context, event }) => ({ event: 'FAILOVER.VERIFIED', node: context.node, detail: { ...event.output } }) },
          ],
        },
        onError: { target: 'done', actions: assign({ verification: ({ event }) => ({ ok: false, error: errorText(event.error) }) }) },
      },
    },
    done: {
      type: 'final',
      entry: { type: 'emitProgress', params: ({ context }) => ({ event: 'FAILOVER.DONE', node: context.node, detail: { ...report(context) } }) },
    },
    aborted: {
      type: 'final',
      entry: [assign({ aborted: true }), { type: 'emitProgress', params: ({ context }) => ({ event: 'FAILOVER.ABORTED', node: context.node, detail: { reason: context.reason } }) }],
    },
  },
  output: ({ context }) => report(context),
});
