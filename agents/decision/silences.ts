// `homeostat silence`: no notification about a guest or a node until the silence expires. The
// decision agent keeps them (fleet-state `silence.<id>`, its bucket) and sweeps expired ones; the
// notify agent reads them before it tells anyone anything.
//   fleet.cmd.silence.add   {vmid? | node?, durationMs, by?, reason?} → SilenceRecord
//   fleet.cmd.silence.list  {}                                       → SilenceRecord[] (active)
//   fleet.cmd.silence.clear {id, by?}                                → {id, cleared}
import { z } from 'zod';
import { parseCommandArgs } from '../runtime/agent.ts';
import { HomeostatError, newId } from '../../core/mod.ts';
import { activeSilences, kvKeys, kvList, kvPut, SilenceRecord, subjects, type Bus, type CommandRequest, type Envelope, type Stoppable } from '../../bus/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';

const PREFIX = 'silence.';
const MAX_MS = 30 * 24 * 3600_000;
const AddArgs = z.object({
  vmid: z.coerce.number().int().optional(),
  node: z.string().min(1).max(64).optional(),
  durationMs: z.number().int().min(1000).max(MAX_MS),
  by: z.string().min(1).max(120).optional(),
  reason: z.string().max(500).optional(),
}).refine((a) => (a.vmid === undefined) !== (a.node === undefined), 'expected a vmid or a node');
const ClearArgs = z.object({ id: z.string().min(1).max(80) });

const parse = <T>(schema: z.ZodType<T>, env: Envelope<CommandRequest>, verb: string): T => parseCommandArgs(schema, env.data.args, verb);

export function serveSilences(bus: Bus, fleet: Fleet): Stoppable[] {
  return [
    bus.serve<CommandRequest>(subjects.cmd('silence.add'), async (env) => {
      const a = parse(AddArgs, env, 'silence.add');
      if (a.vmid !== undefined && !fleet.byVmid.has(a.vmid)) throw new HomeostatError('HOMEOSTAT_ERR_NOT_FOUND', `no guest ${a.vmid} in fleet ${fleet.name}`);
      if (a.node !== undefined && !fleet.nodes.some((n) => n.name === a.node)) throw new HomeostatError('HOMEOSTAT_ERR_NOT_FOUND', `no node ${a.node} in fleet ${fleet.name}`);
      const now = Date.now();
      const rec: SilenceRecord = {
        id: `sil-${newId(now).toLowerCase()}`,
        ...(a.vmid !== undefined ? { vmid: a.vmid } : { node: a.node }),
        until: new Date(now + a.durationMs).toISOString(),
        by: a.by ?? env.data.requestedBy,
        reason: a.reason ?? '',
        at: new Date(now).toISOString(),
      };
      await kvPut(bus.kv.fleetState, kvKeys.silence(rec.id), rec);
      return rec;
    }),
    bus.serve<CommandRequest>(subjects.cmd('silence.list'), () => activeSilences(bus.kv.fleetState)),
    bus.serve<CommandRequest>(subjects.cmd('silence.clear'), async (env) => {
      const a = parse(ClearArgs, env, 'silence.clear');
      const active = await activeSilences(bus.kv.fleetState);
      if (!active.some((s) => s.id === a.id)) throw new HomeostatError('HOMEOSTAT_ERR_NOT_FOUND', `no active silence ${a.id} (homeostat silence list)`);
      await bus.kv.fleetState.delete(kvKeys.silence(a.id));
      return { id: a.id, cleared: true };
    }),
  ];
}

/** Delete expired silences (they are ignored anyway; this keeps the bucket small). */
export async function sweepSilences(bus: Bus, now = Date.now()): Promise<void> {
  const all = await kvList(bus.kv.fleetState, PREFIX, SilenceRecord);
  for (const [key, s] of all) if (Date.parse(s.until) <= now) await bus.kv.fleetState.delete(key);
}
