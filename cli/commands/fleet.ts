// `homeostat fleet validate FILE`: every problem of a manifest at once, one per line.
// `homeostat fleet import`: a manifest from a real cluster's /nodes and /cluster/resources.
import { existsSync, writeFileSync } from 'node:fs';
import { HomeostatError } from '../../core/mod.ts';
import { loadFleetFile, ManifestError } from '../../fleet/manifest.ts';
import { createPveClient } from '../../fleet/pve-client.ts';
import { manifestFromCluster } from '../../fleet/import.ts';
import { parseCommand } from '../args.ts';
import { printJson, println } from '../output.ts';
import { pveEndpoint } from '../pve-endpoint.ts';

const HELP = `Usage: homeostat fleet validate FILE [--json]
       homeostat fleet import [--out FILE] [--force] [--name NAME] [--data-dir DIR]

validate: check a fleet manifest (YAML or JSON): unknown keys (with "did you mean"), wrong types,
duplicate vmids or names, unknown nodes, dependency cycles — every problem at once, one per line,
each naming its path. Exit 0 valid, 2 invalid. fleet.example.yaml shows every key, commented.

import: write a manifest from a cluster's /nodes and /cluster/resources, through the PVE API client:
PVE_URL, PVE_TOKEN_ID, PVE_TOKEN_SECRET (PVE_CA_FILE or PVE_INSECURE=1), else the twin of the
\`homeostat up --sim\` on the data directory. Nodes, guests, types and sizes come from the cluster;
boot layers, dependencies, health URLs and protection are left for you, each line marked
"# TODO:". Every guest starts at layer 1, so the file validates as written; fill in the TODOs,
then \`homeostat fleet validate FILE\`.
  --out FILE   write there (default: stdout); an existing file is kept unless --force
  --name NAME  the fleet's name (default: the PVE cluster's name, else "fleet")`;

const OPTIONS = {
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
  out: { type: 'string' },
  force: { type: 'boolean', default: false },
  name: { type: 'string' },
  'data-dir': { type: 'string' },
} as const;

export async function fleetMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, OPTIONS);
  if (values.help || !positionals.length) {
    println(HELP);
    return values.help ? 0 : 2;
  }
  const [sub, file, ...extra] = positionals;
  if (sub === 'import') {
    if (file) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `fleet import takes no file argument; write it with --out ${file}`);
    return importMain(values);
  }
  if (sub !== 'validate') throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `unknown fleet subcommand ${JSON.stringify(sub)}; expected validate or import`);
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

async function importMain(values: { out?: string; force?: boolean; name?: string; 'data-dir'?: string }): Promise<number> {
  if (values.out && existsSync(values.out) && !values.force) {
    throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `${values.out} exists; pass --force to overwrite it (or --out another file)`);
  }
  const ep = pveEndpoint(values['data-dir'], 'env');
  const pve = createPveClient({ url: ep.url, tokenId: ep.tokenId, tokenSecret: ep.tokenSecret, caPem: ep.caPem, insecure: ep.insecure ?? false });
  try {
    const [nodes, guests, status] = await Promise.all([pve.listNodes(), pve.clusterGuests(), pve.clusterStatus().catch(() => [])]);
    const cluster = status.find((s) => s.type === 'cluster')?.name;
    const name = values.name ?? cluster ?? 'fleet';
    const text = manifestFromCluster({ nodes, guests, from: new URL(ep.url).host, name });
    if (!values.out) {
      process.stdout.write(text);
      return 0;
    }
    writeFileSync(values.out, text, { flag: values.force ? 'w' : 'wx' });
    process.stderr.write(`wrote ${values.out}: fleet ${name}, ${nodes.length} node(s), ${guests.length} guest(s); fill in the lines marked TODO (layers, dependencies), then \`homeostat fleet validate ${values.out}\`\n`);
    return 0;
  } finally {
    await pve.close();
  }
}
