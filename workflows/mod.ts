// Workflows: the runner that drives the state machines (boot, shutdown, failover, chaos) from the
// workflows agent, plus what the CLI needs to follow and show them.
export { agent, newWorkflowId } from './agent.ts';
export { WorkflowRunner, ENDED_EVENT, type WorkflowStatus } from './runner.ts';
export { WORKFLOW_KINDS, type WorkflowKind } from './deps.ts';
export { statusOf } from './machines.ts';
export type { GuestLine } from './plans.ts';
export * from './experiment.ts';
export { followWorkflow, runWorkflow, startWorkflow, workflowRecord, type FollowedEvent, type StartReply, type WorkflowResult } from './follow.ts';
export { renderPlan, renderResult, secs, waitingAfter, WorkflowBoard, type Paint } from './render.ts';
export { chaosTimeline, healingTimeline, renderChaosReport, type TimelineEntry } from './chaos-report.ts';
