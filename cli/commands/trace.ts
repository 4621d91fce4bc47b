// `homeostat trace <incidentId>`: the causal chain, with timestamps, from the streams.
import { HomeostatError, isHomeostatError } from '../../core/mod.ts';
import { openIncidents, traceIncident, type Trace } from '../../agents/operator/mod.ts';
import type { Bus, Incident } from '../../bus/mod.ts';
import { COMMON_OPTIONS, parseCommand } from '../args.ts';
import { command, withBus } from '../client.ts';
import { resolveId } from '../ids.ts';
import { localTime } from '../../core/mod.ts';
import { paint, printJson, println, type Color } from '../output.ts';

const HELP = `Usage: homeostat trace <incidentId|prefix|vmid> [--json] [--nats URL]
       homeostat trace --last

The causal chain of an incident: event → alert → incident → decision → action → task →
verification, rebuilt from the FLEET stream by correlation and causation ids. The incident is
named by its id or any unique prefix of it (\`inc-\` optional), by a vmid (that guest's latest
incident), or --last (the latest incident of all). Times are local, with the zone.`;

/** The incident `ref` names: an id or unique prefix, a vmid (its latest incident), or the latest. */
export async function findIncident(bus: Bus, ref: string | undefined): Promise<string> {
  const all = await openIncidents(bus, true);
  const latest = (xs: Incident[]) => xs.sort((a, b) => b.openedAt.localeCompare(a.openedAt))[0];
  if (ref === undefined) {
    const last = latest(all);
    if (!last) throw new HomeostatError('HOMEOSTAT_ERR_NOT_FOUND', 'no incidents yet');
    return last.id;
  }
  if (/^\d+$/.test(ref) && Number(ref) >= 100) {
    const vmid = Number(ref);
    const inc = latest(all.filter((i) => i.rootCause.vmid === vmid || i.symptoms.some((s) => s.vmid === vmid) || i.suppressed.some((s) => s.vmid === vmid)));
    if (inc) return inc.id;
  }
  return resolveId(ref, all.map((i) => i.id), 'incident', 'see `homeostat incidents`');
}

const stepColor: Record<string, Color> = { event: 'cyan', alert: 'yellow', incident: 'red', decision: 'magenta', action: 'blue', task: 'blue', verification: 'green', workflow: 'gray', other: 'gray' };

export function renderTrace(t: Trace): string {
  const i = t.incident;
  const head = `${paint(i.id, 'bold')} ${i.status === 'open' ? paint('open', 'red') : paint('resolved', 'green')} — ${i.title}`;
  const cause = `root cause: ${i.rootCause.name ?? ''} ${i.rootCause.vmid ?? i.rootCause.node ?? ''} ${i.rootCause.reason}`.replace(/\s+/g, ' ');
  const lines = t.entries.map((e) => `${paint(localTime(e.ts), 'gray')}  ${paint(e.step.padEnd(12), stepColor[e.step] ?? 'gray')} ${e.summary}`);
  const t0 = t.entries[0] ? Date.parse(t.entries[0].ts) : undefined;
  const last = t.entries.at(-1);
  const span = t0 && last ? `${((Date.parse(last.ts) - t0) / 1000).toFixed(1)} s from first event to last step` : '';
  return [head, cause, i.symptoms.length ? `symptoms: ${i.symptoms.map((s) => `${s.name ?? s.vmid}`).join(', ')}` : '', '', ...lines, '', span].filter((l, idx) => l !== '' || idx > 2).join('\n');
}

export async function traceMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, { ...COMMON_OPTIONS, last: { type: 'boolean', default: false } });
  if (values.help) {
    println(HELP);
    return 0;
  }
  if (values.last ? positionals.length !== 0 : positionals.length !== 1) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', 'expected one incident id, prefix or vmid, or --last (see `homeostat incidents`)');
  const t = await withBus(values, async (bus) => {
    const incidentId = await findIncident(bus, values.last ? undefined : positionals[0]);
    try {
      return await command<Trace>(bus, 'trace', { incidentId }, 15_000);
    } catch (e) {
      if (!isHomeostatError(e, 'HOMEOSTAT_ERR_TIMEOUT')) throw e;
      return traceIncident(bus, incidentId);
    }
  });
  if (values.json) printJson(t);
  else println(renderTrace(t));
  return 0;
}
