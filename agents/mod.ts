// The agent registry: each agent is its own folder with a mod.ts exporting `agent: AgentModule`.
import { HomeostatError } from '../core/mod.ts';
import { AGENT_NAMES, type AgentModule, type AgentName } from './runtime/agent.ts';

export * from './runtime/agent.ts';
export * from './runtime/config.ts';
export { createLogger, REDACT_PATHS, type AppLogger } from '../core/mod.ts';
export * from './runtime/metrics.ts';
export * from './runtime/heartbeat.ts';

const loaders: Record<AgentName, () => Promise<{ agent: AgentModule }>> = {
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

export async function loadAgent(name: string): Promise<AgentModule> {
  if (!isAgentName(name)) {
    throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `unknown agent ${JSON.stringify(name)}; expected one of ${AGENT_NAMES.join('|')}`);
  }
  return (await loaders[name]()).agent;
}
