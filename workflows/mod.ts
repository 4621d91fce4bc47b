// Workflows, the library: activities, plans and the runner that drives the state machines (boot,
// shutdown, failover, chaos) and persists them; the workflows agent (agents/workflows/) serves
// them on the bus. Plus what the CLI needs to follow and show them.
export { WorkflowRunner, ENDED_EVENT, fitForMessage, type WorkflowStatus } from './runner.ts';
export { releaseAll, setDesired, WORKFLOW_KINDS, type RunContext, type WorkflowDeps, type WorkflowKind } from './deps.ts';
export { ActionTracker } from './actions.ts';
export { buildMachine, statusOf } from './machines.ts';
export { FleetObserver } from './observer.ts';
export { bootPlan, failoverPlan, shutdownPlan, type GuestLine } from './plans.ts';
export { detectSimulator, simClient } from './sim-client.ts';
export * from './experiment.ts';
export { followWorkflow, runWorkflow, startWorkflow, workflowRecord, type FollowedEvent, type StartReply, type WorkflowResult } from './follow.ts';
export { renderPlan, renderResult, secs, waitingAfter, WorkflowBoard, type Paint } from './render.ts';
export { chaosTimeline, healingTimeline, renderChaosReport, type TimelineEntry } from './chaos-report.ts';
