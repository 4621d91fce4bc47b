// Responding to incidents: `ack <id>` (a person has it: no repeated notifications), `resolve <id>
// --reason T` (closed by hand, the reason in its timeline), `silence <vmid|node> <duration>` (no
// notifications about it until then), `silence list`, `silence clear <id>`.
import { HomeostatError, parseDurationMs } from '../../core/mod.ts';
import type { SilenceRecord } from '../../bus/mod.ts';
import { openIncidents } from '../../agents/operator/mod.ts';
import { COMMON_OPTIONS, parseCommand } from '../args.ts';
import { command, loadFleetForCli, withBus } from '../client.ts';
import { resolveId } from '../ids.ts';
import { printJson, println, table } from '../output.ts';
import { localTime } from '../../core/mod.ts';
import type { Bus } from '../../bus/mod.ts';

const by = () => `cli:${process.env.USER ?? 'operator'}`;

async function incidentId(bus: Bus, input: string): Promise<string> {
  const all = await openIncidents(bus, true);
  return resolveId(input, all.map((i) => i.id), 'incident', 'homeostat incidents');
}

const ACK_HELP = `Usage: homeostat ack <incidentId|prefix> [--note TEXT] [--json] [--nats URL]

Acknowledge an open incident: you have it. Recorded on the incident (who, when) and announced as
IncidentAcknowledged; notifications about it are no longer repeated (changes are still told).`;

export async function ackMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, { ...COMMON_OPTIONS, note: { type: 'string' } });
  if (values.help) {
    println(ACK_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', 'expected one incident id, e.g. `homeostat ack inc-01j…`');
  const r = await withBus(values, async (bus) => {
    const id = await incidentId(bus, positionals[0]);
    return command<{ incidentId: string; acknowledged: boolean; by: string }>(bus, 'incident.ack', { incidentId: id, by: by(), ...(values.note ? { note: values.note } : {}) });
  });
  if (values.json) printJson(r);
  else println(`${r.incidentId} acknowledged by ${r.by}: notifications about it are not repeated`);
  return 0;
}

const RESOLVE_HELP = `Usage: homeostat resolve <incidentId|prefix> --reason TEXT [--json] [--nats URL]

Close an open incident by hand. The reason goes into its timeline (\`homeostat trace\`) and the
IncidentResolved event; the decision agent stops working on it. A guest that still fails opens a
new incident only when its failure changes.`;

export async function resolveMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, { ...COMMON_OPTIONS, reason: { type: 'string' } });
  if (values.help) {
    println(RESOLVE_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', 'expected one incident id, e.g. `homeostat resolve inc-01j… --reason "fixed the disk"`');
  if (!values.reason?.trim()) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', '--reason TEXT is required: say why it is closed');
  const reason = values.reason.trim();
  const r = await withBus(values, async (bus) => {
    const id = await incidentId(bus, positionals[0]);
    return command<{ incidentId: string; resolved: boolean; by: string; reason: string }>(bus, 'incident.resolve', { incidentId: id, by: by(), reason });
  });
  if (values.json) printJson(r);
  else println(`${r.incidentId} resolved by ${r.by}: ${r.reason}`);
  return 0;
}

const SILENCE_HELP = `Usage: homeostat silence <vmid|node> <duration> [--reason TEXT] [--json] [--nats URL]
       homeostat silence list
       homeostat silence clear <silenceId|prefix>

No notifications about a guest (or every guest of a node) until the duration (30m, 2h, 1d) is
over. Healing goes on; only telling people stops. Kept by the decision agent in fleet-state.`;

function renderSilence(s: SilenceRecord): string[] {
  return [s.id, s.vmid !== undefined ? String(s.vmid) : `node ${s.node}`, localTime(s.until), s.by, s.reason];
}

export async function silenceMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, { ...COMMON_OPTIONS, reason: { type: 'string' }, fleet: { type: 'string' } });
  if (values.help || !positionals.length) {
    println(SILENCE_HELP);
    return values.help ? 0 : 2;
  }
  const [first, second, ...extra] = positionals;
  if (first === 'list') {
    const list = await withBus(values, (bus) => command<SilenceRecord[]>(bus, 'silence.list', {}));
    if (values.json) printJson(list);
    else if (!list.length) println('No active silences.');
    else println(table([['ID', 'TARGET', 'UNTIL', 'BY', 'REASON'], ...list.map(renderSilence)]));
    return 0;
  }
  if (first === 'clear') {
    if (!second || extra.length) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', 'expected `homeostat silence clear <id>`');
    const r = await withBus(values, async (bus) => {
      const list = await command<SilenceRecord[]>(bus, 'silence.list', {});
      const id = resolveId(second, list.map((s) => s.id), 'silence', 'homeostat silence list');
      return command<{ id: string; cleared: boolean }>(bus, 'silence.clear', { id, by: by() });
    });
    if (values.json) printJson(r);
    else println(`silence ${r.id} cleared`);
    return 0;
  }
  if (!second || extra.length) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', 'expected `homeostat silence <vmid|node> <duration>`, e.g. `homeostat silence 159 2h`');
  const durationMs = parseDurationMs(second);
  if (durationMs === undefined || durationMs < 1000) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `expected a duration like 30m, 2h or 1d, got ${JSON.stringify(second)}`);
  const r = await withBus(values, async (bus, config) => {
    const fleet = loadFleetForCli(values.fleet, config);
    const vmid = /^\d+$/.test(first) ? Number(first) : undefined;
    if (vmid === undefined && !fleet.nodes.some((n) => n.name === first)) throw new HomeostatError('HOMEOSTAT_ERR_NOT_FOUND', `no guest or node "${first}" in fleet ${fleet.name}`);
    return command<SilenceRecord>(bus, 'silence.add', { ...(vmid !== undefined ? { vmid } : { node: first }), durationMs, by: by(), ...(values.reason ? { reason: values.reason } : {}) });
  });
  if (values.json) printJson(r);
  else println(`silenced ${r.vmid ?? `node ${r.node}`} until ${localTime(r.until)} [${r.id}] — \`homeostat silence clear ${r.id}\` to end it early`);
  return 0;
}
