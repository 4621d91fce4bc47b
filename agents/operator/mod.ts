// The operator agent: answers status/incidents/trace requests and chat, over request-reply.
import { ChatRequest, subjects, type CommandRequest } from '../../bus/mod.ts';
import { agentHandle, type AgentModule } from '../runtime/agent.ts';
import { OllamaPhraser } from '../../llm/mod.ts';
import { answerChat, type Phraser } from './chat.ts';
import { fleetStatus, openIncidents } from './queries.ts';
import { traceIncident } from './trace.ts';

export { answerChat, resolveGuest, type Phraser } from './chat.ts';
export { parseIntent, type Intent } from './intents.ts';
export { fleetStatus, openIncidents, pendingApprovals, type FleetStatus, type GuestStatus } from './queries.ts';
export { traceIncident, type Trace, type TraceEntry } from './trace.ts';

export interface OperatorOptions {
  /** A Phraser, null = none (tests), absent = the local Ollama model from config. */
  phraser?: Phraser | null;
}

export const agent: AgentModule<OperatorOptions> = {
  name: 'operator',
  async start(ctx) {
    const { bus, fleet } = ctx;
    const given = ctx.options.phraser;
    const phraser = given === null ? undefined
      : given ?? new OllamaPhraser({ host: ctx.config.OLLAMA_HOST, model: ctx.config.OLLAMA_MODEL, timeoutMs: Math.min(ctx.config.OLLAMA_TIMEOUT_MS, 10_000) });
    const served = [
      bus.serve<CommandRequest>(subjects.cmd('status'), async () => fleetStatus(bus, fleet)),
      bus.serve<CommandRequest>(subjects.cmd('incidents'), async (env) => openIncidents(bus, env.data.args.all !== false)),
      bus.serve<CommandRequest>(subjects.cmd('trace'), async (env) => traceIncident(bus, String(env.data.args.incidentId ?? ''))),
      bus.serve<ChatRequest>(subjects.chat(), async (env) => answerChat(env.data, bus, fleet, phraser, ctx.identity?.signer), { schema: ChatRequest }),
    ];
    await bus.nc.flush();
    ctx.log.info('operator ready: fleet.cmd.status|incidents|trace, fleet.chat');
    return agentHandle(async () => {
      await Promise.all(served.map((s) => s.stop()));
    });
  },
};
