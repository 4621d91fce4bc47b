// The decision agent (lands with the self-healing issue).
import { agentHandle, type AgentModule } from '../runtime/agent.ts';

export const agent: AgentModule = {
  name: 'decision',
  async start(ctx) {
    ctx.log.info('decision agent not implemented yet: idle');
    return agentHandle(async () => {});
  },
};
