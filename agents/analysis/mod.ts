// The analysis agent (lands with the self-healing issue).
import { agentHandle, type AgentModule } from '../runtime/agent.ts';

export const agent: AgentModule = {
  name: 'analysis',
  async start(ctx) {
    ctx.log.info('analysis agent not implemented yet: idle');
    return agentHandle(async () => {});
  },
};
