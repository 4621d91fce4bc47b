// The analysis agent's request/reply verbs (it owns the incidents):
//   fleet.cmd.incident.ack     {incidentId, by?, note?}  → {incidentId, acknowledged, by}
//   fleet.cmd.incident.resolve {incidentId, reason, by?} → {incidentId, resolved, by}
// Both answer only once the incident message is stored, so the CLI's next read sees it.
import { z } from 'zod';
import { parseCommandArgs } from '../runtime/agent.ts';
import { HomeostatError } from '../../core/mod.ts';
import { IncidentRecord, kvGet, kvKeys, subjects, type Bus, type CommandRequest, type Envelope, type Stoppable } from '../../bus/mod.ts';
import type { Analyzer, Output } from './analyzer.ts';
import type { Outbox } from './outbox.ts';

const AckArgs = z.object({ incidentId: z.string().min(1).max(80), by: z.string().min(1).max(120).optional(), note: z.string().max(500).optional() });
const ResolveArgs = z.object({ incidentId: z.string().min(1).max(80), by: z.string().min(1).max(120).optional(), reason: z.string().min(1, 'a reason is required').max(500) });

const parse = <T>(schema: z.ZodType<T>, env: Envelope<CommandRequest>, verb: string): T => parseCommandArgs(schema, env.data.args, verb);

export function serveIncidentCommands(bus: Bus, analyzer: Analyzer, outbox: Outbox): Stoppable[] {
  const notOpen = async (id: string): Promise<never> => {
    const stored = await kvGet(bus.kv.incidents, kvKeys.incident(id), IncidentRecord);
    if (stored?.value.status === 'resolved') throw new HomeostatError('HOMEOSTAT_ERR_ALREADY_RESOLVED', `incident ${id} is already resolved (${stored.value.resolvedAt ?? ''})`);
    throw new HomeostatError('HOMEOSTAT_ERR_NOT_FOUND', `no open incident ${id} (homeostat incidents --open)`);
  };
  const run = async (out: Output[] | undefined, id: string) => {
    if (!out) return notOpen(id);
    await outbox.send(out);
  };
  return [
    bus.serve<CommandRequest>(subjects.cmd('incident.ack'), async (env) => {
      const a = parse(AckArgs, env, 'incident.ack');
      const by = a.by ?? env.data.requestedBy;
      await run(analyzer.acknowledge(a.incidentId, by, a.note), a.incidentId);
      return { incidentId: a.incidentId, acknowledged: true, by };
    }),
    bus.serve<CommandRequest>(subjects.cmd('incident.resolve'), async (env) => {
      const a = parse(ResolveArgs, env, 'incident.resolve');
      const by = a.by ?? env.data.requestedBy;
      await run(analyzer.resolveByHand(a.incidentId, by, a.reason), a.incidentId);
      return { incidentId: a.incidentId, resolved: true, by, reason: a.reason };
    }),
  ];
}
