// The workflow machines. Pure: no I/O, no clocks beyond XState's own `after` / delayed events.
//
// How a runner binds and drives them (workflows/):
// - Bind every actor and `emitProgress` with `machine.provide({ actors, actions })`. Unbound actors
//   reject with ActorNotBoundError (code HOMEOSTAT_ERR_ACTOR_NOT_BOUND), which the machines treat
//   like any I/O failure.
// - `emitProgress(_, progress)` gets `{ event, vmid?, node?, layer?, detail? }`: publish it on
//   `fleet.workflows.<kind>.<workflowId>.<event>`. The event names are listed in *_EVENTS.
// - Persist `actor.getPersistedSnapshot()` (plain JSON) after every transition; restore with
//   `createActor(machine.provide(...), { snapshot, input })` then `start()` (the types want
//   `input`; xstate ignores it when a snapshot is given).
// - Right after `start()` on a restored snapshot, send `{ type: 'RESUME' }`. XState 5 does not
//   persist pending timers (delayed events, `after`), so RESUME re-arms them (boot, shutdown and
//   failover re-arm per-guest timeouts / the fence delay with their full budget) and moves a
//   chaos experiment caught in `running` straight to `rollingBack`.
// - Per-guest steps (boot, shutdown, failover recovery) run through one `guestSteps` driver per run
//   (children.ts), not a spawned child each: RESUME also runs every step that was in flight again.
//   Restoring re-invokes the other in-flight promise actors. Either way the same input comes back,
//   so I/O actors must be idempotent: their inputs carry a stable `actionId` (`<workflowId>:<vmid>:start:<attempt>`,
//   `…:shutdown`, `…:stop`, `…:recover:<attempt>`, `<workflowId>:<node>:fence`,
//   `<workflowId>:fault:<index>`, `<workflowId>:rollback`) to use as the JetStream dedup id.
// - Stopping the actor stops its children; promise actors see their `signal` aborted.
export * from './graph.ts';
export type { Progress } from './progress.ts';
export { errorText } from './progress.ts';
export { ActorNotBoundError, givePlace, StepQueue, stepsDriver, type StepsOptions } from './children.ts';
export { LayeredBootMachine, BOOT_EVENTS, startActionId } from './boot.ts';
export type { BootInput, BootGuestInput, BootSummary, BootEvent, BootEventName, StartGuestInput, WaitHealthyInput, WaitHealthyOutput } from './boot.ts';
export { GracefulShutdownMachine, SHUTDOWN_EVENTS, shutdownActionId } from './shutdown.ts';
export type { ShutdownInput, ShutdownGuestInput, ShutdownSummary, ShutdownEvent, ShutdownEventName, ShutdownGuestActorInput, StopGuestActorInput, StopOutput } from './shutdown.ts';
export { NodeFailoverMachine, FAILOVER_EVENTS, placeGuests, fenceActionId, recoverActionId } from './failover.ts';
export type {
  FailoverInput, FailoverGuestInput, FailoverReport, FailoverEvent, FailoverEventName, Placement,
  ConfirmFenceInput, ConfirmFenceOutput, FenceNodeInput, RecoverGuestInput, VerifyRecoveryInput, VerifyRecoveryOutput,
} from './failover.ts';
export { ChaosExperimentMachine, CHAOS_EVENTS, faultActionId, rollbackActionId } from './chaos.ts';
export type {
  ChaosInput, ChaosExperimentInput, ChaosFaultStep, ChaosReport, ChaosEvent, ChaosEventName, FaultRecord,
  CheckSteadyStateInput, CheckSteadyStateOutput, InjectFaultInput, InjectFaultOutput, WatchHealInput, WatchAbortInput, RunRollbacksInput,
} from './chaos.ts';
