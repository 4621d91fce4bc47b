// `homeostat fault <kind> <target>`: fault injection into the twin without curl or secrets. The
// simulator's URL, token and CA come from the ready file of the `up --sim` on the data directory
// (or PVE_URL / PVE_TOKEN_ID / PVE_TOKEN_SECRET for a `homeostat sim` of your own).
import { HomeostatError, parseDurationMs } from '../../core/mod.ts';
import { FAULT_KINDS } from '../../fleet/sim/mod.ts';
import { simClient } from '../../workflows/mod.ts';
import { parseCommand } from '../args.ts';
import { pveEndpoint } from '../pve-endpoint.ts';
import { printJson, println, table } from '../output.ts';

const HELP = `Usage: homeostat fault <kind> <target> [--for DURATION] [--json] [--data-dir DIR]
       homeostat fault list
       homeostat fault clear [id]

Inject a fault into the simulator (the twin) that \`homeostat up --sim\` runs; the URL and token
come from <data-dir>/ready.json (default ./.homeostat, or $HOMEOSTAT_DATA_DIR), else PVE_URL,
PVE_TOKEN_ID, PVE_TOKEN_SECRET.
  kinds: ${FAULT_KINDS.join(', ')}
  target: a vmid, a node, or * (api-error, api-slow)
  --for D  heal it by itself after D (30s, 5m)
\`fault clear\` heals every active fault (or the one named).`;

const endpoint = (dataDir: string | undefined) => pveEndpoint(dataDir, 'ready');

function durationMs(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const ms = parseDurationMs(v);
  if (ms === undefined) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `--for: expected a duration like 30s or 5m, got ${JSON.stringify(v)}`);
  return ms;
}

export async function faultMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, {
    json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false }, 'data-dir': { type: 'string' }, for: { type: 'string' },
  });
  if (values.help || !positionals.length) {
    println(HELP);
    return values.help ? 0 : 2;
  }
  const [kind, target] = positionals;
  if (kind !== 'list' && kind !== 'clear') {
    if (!(FAULT_KINDS as readonly string[]).includes(kind)) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `unknown fault kind ${JSON.stringify(kind)}; kinds: ${FAULT_KINDS.join(', ')}`);
    if (!target || positionals.length !== 2) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `expected \`homeostat fault ${kind} <vmid|node>\``);
  }
  const sim = simClient(endpoint(values['data-dir']));
  try {
    if (kind === 'list') {
      const list = await sim.faults();
      if (values.json) printJson(list);
      else println(list.length ? table([['ID', 'KIND', 'TARGET'], ...list.map((f) => [f.id, f.kind, f.target])]) : 'no active faults');
      return 0;
    }
    if (kind === 'clear') {
      const ids = target ? [target] : (await sim.faults()).map((f) => f.id);
      let healed = 0;
      for (const id of ids) if (await sim.healFault(id)) healed++;
      if (values.json) printJson({ healed });
      else println(`healed ${healed} fault(s)`);
      return target && !healed ? 1 : 0;
    }
    const f = await sim.injectFault({ kind, target, ...(values.for ? { durationMs: durationMs(values.for) } : {}) });
    if (values.json) printJson(f);
    else println(`injected ${f.kind} on ${f.target} [fault ${f.id}] — watch it heal: homeostat events`);
    return 0;
  } finally {
    await sim.close();
  }
}
