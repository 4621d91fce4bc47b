// `homeostat trace <incidentId>`: the causal chain, with timestamps, from the streams.
import { HomeostatError, isHomeostatError } from '../../core/mod.ts';
import { traceIncident, type Trace } from '../../agents/operator/mod.ts';
import { COMMON_OPTIONS, parseCommand } from '../args.ts';
import { command, withBus } from '../client.ts';
import { paint, printJson, println, type Color } from '../output.ts';

const HELP = `Usage: homeostat trace <incidentId> [--json] [--nats URL]

The causal chain of an incident: event → alert → incident → decision → action → task →
verification, rebuilt from the FLEET stream by correlation and causation ids.`;

const stepColor: Record<string, Color> = { event: 'cyan', alert: 'yellow', incident: 'red', decision: 'magenta', action: 'blue', task: 'blue', verification: 'green', workflow: 'gray', other: 'gray' };

export function renderTrace(t: Trace): string {
  const i = t.incident;
  const head = `${paint(i.id, 'bold')} ${i.status === 'open' ? paint('open', 'red') : paint('resolved', 'green')} — ${i.title}`;
  const cause = `root cause: ${i.rootCause.name ?? ''} ${i.rootCause.vmid ?? i.rootCause.node ?? ''} ${i.rootCause.reason}`.replace(/\s+/g, ' ');
  const lines = t.entries.map((e) => `${paint(e.ts.replace('T', ' ').slice(0, 23), 'gray')}  ${paint(e.step.padEnd(12), stepColor[e.step] ?? 'gray')} ${e.summary}`);
  const t0 = t.entries[0] ? Date.parse(t.entries[0].ts) : undefined;
  const last = t.entries.at(-1);
  const span = t0 && last ? `${((Date.parse(last.ts) - t0) / 1000).toFixed(1)} s from first event to last step` : '';
  return [head, cause, i.symptoms.length ? `symptoms: ${i.symptoms.map((s) => `${s.name ?? s.vmid}`).join(', ')}` : '', '', ...lines, '', span].filter((l, idx) => l !== '' || idx > 2).join('\n');
}

export async function traceMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, COMMON_OPTIONS);
  if (values.help) {
    println(HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', 'expected one incident id (see `homeostat incidents`)');
  const t = await withBus(values, async (bus) => {
    try {
      return await command<Trace>(bus, 'trace', { incidentId: positionals[0] }, 15_000);
    } catch (e) {
      if (!isHomeostatError(e, 'HOMEOSTAT_ERR_TIMEOUT')) throw e;
      return traceIncident(bus, positionals[0]);
    }
  });
  if (values.json) printJson(t);
  else println(renderTrace(t));
  return 0;
}
