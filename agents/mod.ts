// The agent registry: each agent is its own folder with a mod.ts exporting `agent: AgentModule`.
import { HomeostatError } from '../core/mod.ts';
import { AGENT_NAMES, type AgentModule, type AgentName } from './runtime/agent.ts';
import type { HeartbeatSettings } from './runtime/heartbeat.ts';
import type { ActionOptions } from './action/mod.ts';
import type { AnalysisOptions } from './analysis/mod.ts';
import type { DecisionOptions } from './decision/mod.ts';
import type { NotifyOptions } from './notify/mod.ts';
import type { OperatorOptions } from './operator/mod.ts';
import type { SensingAgentOptions } from './sensing/mod.ts';
import type { WorkflowsOptions } from './workflows/mod.ts';

export * from './runtime/agent.ts';
export * from './runtime/config.ts';
export * from './runtime/metrics.ts';
export * from './runtime/heartbeat.ts';

/** Each agent's own options, by agent name: what the stack, `homeostat agent`, tests and benches
 *  may set (everything optional; defaults are the agent's). */
export interface AgentOptionsByName {
  sensing: SensingAgentOptions;
  analysis: AnalysisOptions;
  decision: DecisionOptions;
  action: ActionOptions;
  operator: OperatorOptions;
  workflows: WorkflowsOptions;
  notify: NotifyOptions;
}

/** Options for a whole stack: per agent, plus the heartbeat every agent runs. */
export type AgentOptions = { [N in AgentName]?: AgentOptionsByName[N] } & { heartbeat?: HeartbeatSettings };

export type { ActionOptions, AnalysisOptions, DecisionOptions, NotifyOptions, OperatorOptions, SensingAgentOptions, WorkflowsOptions };

const loaders: { [N in AgentName]: () => Promise<{ agent: AgentModule<AgentOptionsByName[N]> }> } = {
  sensing: () => import('./sensing/mod.ts'),
  analysis: () => import('./analysis/mod.ts'),
  decision: () => import('./decision/mod.ts'),
  action: () => import('./action/mod.ts'),
  operator: () => import('./operator/mod.ts'),
  workflows: () => import('./workflows/mod.ts'),
  notify: () => import('./notify/mod.ts'),
};

export function isAgentName(name: string): name is AgentName {
  return (AGENT_NAMES as readonly string[]).includes(name);
}

export async function loadAgent<N extends AgentName>(name: N): Promise<AgentModule<AgentOptionsByName[N]>> {
  if (!isAgentName(name)) {
    throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `unknown agent ${JSON.stringify(name)}; expected one of ${AGENT_NAMES.join('|')}`);
  }
  return (await loaders[name]()).agent;
}
