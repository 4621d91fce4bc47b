// The sensing agent (lands with the self-healing issue).
import { agentHandle, type AgentModule } from '../runtime/agent.ts';

export const agent: AgentModule = {
  name: 'sensing',
  async start(ctx) {
    ctx.log.info('sensing agent not implemented yet: idle');
    return agentHandle(async () => {});
  },
};
