// The workflows agent (lands with the workflows issue).
import { agentHandle, type AgentModule } from '../agents/runtime/agent.ts';

export const agent: AgentModule = {
  name: 'workflows',
  async start(ctx) {
    ctx.log.info('workflows agent not implemented yet: idle');
    return agentHandle(async () => {});
  },
};
