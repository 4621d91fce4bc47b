// `homeostat fleet validate FILE`: every problem of a manifest at once, one per line.
import { HomeostatError } from '../../core/mod.ts';
import { loadFleetFile, ManifestError } from '../../fleet/manifest.ts';
import { parseCommand } from '../args.ts';
import { printJson, println } from '../output.ts';

const HELP = `Usage: homeostat fleet validate FILE [--json]

Check a fleet manifest (YAML or JSON): unknown keys (with "did you mean"), wrong types, duplicate
vmids or names, unknown nodes, dependency cycles — every problem at once, one per line, each naming
its path. Exit 0 valid, 2 invalid. fleet.example.yaml shows every key, commented.`;

export async function fleetMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, { json: { type: 'boolean', default: false }, help: { type: 'boolean', short: 'h', default: false } });
  if (values.help || !positionals.length) {
    println(HELP);
    return values.help ? 0 : 2;
  }
  const [sub, file, ...extra] = positionals;
  if (sub !== 'validate') throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `unknown fleet subcommand ${JSON.stringify(sub)}; expected validate`);
  if (!file || extra.length) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', 'expected `homeostat fleet validate FILE`');
  try {
    const f = loadFleetFile(file);
    if (values.json) printJson({ valid: true, name: f.name, nodes: f.nodes.length, guests: f.guests.length });
    else println(`${file}: valid — fleet ${f.name}, ${f.nodes.length} node(s), ${f.guests.length} guest(s), ${new Set(f.guests.map((g) => g.layer)).size} layer(s)`);
    return 0;
  } catch (e) {
    if (!(e instanceof HomeostatError) || e.code !== 'HOMEOSTAT_ERR_MANIFEST') throw e;
    const problems = e instanceof ManifestError ? e.problems : [e.message.replace(`${file}: `, '')];
    if (values.json) printJson({ valid: false, problems });
    else process.stderr.write(`${file}: ${problems.length} problem(s)\n${problems.map((p) => `  ${p}`).join('\n')}\n`);
    return 2;
  }
}
