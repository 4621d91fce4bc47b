// The action agent (lands with the self-healing issue).
import { agentHandle, type AgentModule } from '../runtime/agent.ts';

export const agent: AgentModule = {
  name: 'action',
  async start(ctx) {
    ctx.log.info('action agent not implemented yet: idle');
    return agentHandle(async () => {});
  },
};
