// The operator agent (lands with the self-healing issue).
import { agentHandle, type AgentModule } from '../runtime/agent.ts';

export const agent: AgentModule = {
  name: 'operator',
  async start(ctx) {
    ctx.log.info('operator agent not implemented yet: idle');
    return agentHandle(async () => {});
  },
};
