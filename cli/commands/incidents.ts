// `homeostat incidents`: open first, then resolved (most recent first).
import { isHomeostatError } from '../../core/mod.ts';
import { type Incident } from '../../bus/mod.ts';
import { openIncidents } from '../../agents/operator/mod.ts';
import { COMMON_OPTIONS, parseCommand } from '../args.ts';
import { command, withBus } from '../client.ts';
import { paint, printJson, println, table } from '../output.ts';

const HELP = `Usage: homeostat incidents [--open] [--json] [--nats URL]

Incidents with their root cause, symptoms and status. --open shows only open ones.
Follow one with \`homeostat trace <id>\`.`;

export async function incidentsMain(argv: string[]): Promise<number> {
  const { values } = parseCommand(argv, { ...COMMON_OPTIONS, open: { type: 'boolean', default: false } }, false);
  if (values.help) {
    println(HELP);
    return 0;
  }
  const list = await withBus(values, async (bus) => {
    try {
      return await command<Incident[]>(bus, 'incidents', { all: !values.open }, 5000);
    } catch (e) {
      if (!isHomeostatError(e, 'HOMEOSTAT_ERR_TIMEOUT')) throw e;
      return openIncidents(bus, !values.open);
    }
  });
  if (values.json) {
    printJson(list);
    return 0;
  }
  if (!list.length) {
    println('No incidents.');
    return 0;
  }
  println(table([
    ['ID', 'STATUS', 'KIND', 'OPENED', 'ROOT CAUSE', 'TITLE'],
    ...list.map((i) => [i.id, i.status === 'open' ? paint('open', 'red') : paint('resolved', 'green'), i.kind, i.openedAt.replace('T', ' ').slice(0, 19), String(i.rootCause.vmid ?? i.rootCause.node ?? '-'), i.title + (i.symptoms.length ? ` (+${i.symptoms.length} symptoms)` : '')]),
  ]));
  return 0;
}
