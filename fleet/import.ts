// `homeostat fleet import`: a manifest written from what a cluster reports (/nodes and
// /cluster/resources), for an operator to finish. What the API cannot know — boot layers and
// dependencies, health URLs, which guests are protected — is left marked `# TODO:`; every guest
// starts at layer 1 so the file validates before it is filled, and the TODO lines say what to set.
import type { PveGuest, PveNode } from './pve-types.ts';

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

export interface ImportSource {
  nodes: PveNode[];
  guests: PveGuest[];
  /** Where it came from (a URL), for the header. */
  from: string;
  name: string;
  at?: Date;
}

/** A YAML scalar that reads back as this string (quoted when YAML would take it for something else). */
function str(s: string): string {
  return /^[A-Za-z0-9][A-Za-z0-9 ._/-]*$/.test(s) && !/^(true|false|yes|no|on|off|null|~|\d[\d.eE+-]*)$/i.test(s) && !/ $/.test(s) ? s : JSON.stringify(s);
}

/** Guest names are unique in a manifest: a repeated (or missing) PVE name gets its vmid added. */
function uniqueNames(guests: PveGuest[]): Map<number, string> {
  const count = new Map<string, number>();
  for (const g of guests) if (g.name) count.set(g.name, (count.get(g.name) ?? 0) + 1);
  const out = new Map<number, string>();
  for (const g of guests) {
    const base = (g.name ?? `${g.type === 'qemu' ? 'vm' : 'ct'}-${g.vmid}`).slice(0, 50);
    out.set(g.vmid, (count.get(g.name ?? '') ?? 0) > 1 ? `${base}-${g.vmid}` : base);
  }
  return out;
}

const pad = (line: string, width = 34) => (line.length >= width ? `${line} ` : line.padEnd(width));

export function manifestFromCluster(src: ImportSource): string {
  const guests = [...src.guests].sort((a, b) => a.vmid - b.vmid);
  const names = uniqueNames(guests);
  const nodeNames = new Set(src.nodes.map((n) => n.node));
  const out: string[] = [
    `# Fleet manifest imported from ${src.from} (/nodes, /cluster/resources) by \`homeostat fleet import\``,
    `# on ${(src.at ?? new Date()).toISOString()}: ${src.nodes.length} node(s), ${guests.length} guest(s).`,
    '# The API cannot tell what depends on what: fill in every line marked TODO (boot layers and',
    '# dependencies; health URLs and protected guests where you want them), then check the file with',
    '#   homeostat fleet validate FILE',
    '# Every key is explained in fleet.example.yaml.',
    `name: ${str(src.name)}`,
    '',
    'nodes:',
  ];
  for (const n of [...src.nodes].sort((a, b) => a.node.localeCompare(b.node))) {
    out.push(`  - name: ${str(n.node)}${n.status !== 'online' ? `${' '.repeat(Math.max(1, 24 - n.node.length))}# ${n.status} at import` : ''}`);
    if (n.maxcpu) out.push(`    cpus: ${Math.max(1, Math.round(n.maxcpu))}`);
    if (n.maxmem) out.push(`    memGiB: ${Math.max(1, Math.round(n.maxmem / GiB))}`);
  }
  out.push('', 'guests:');
  if (!guests.length) out.push('  []');
  for (const g of guests) {
    out.push(`  - vmid: ${g.vmid}${g.status !== 'running' ? `${' '.repeat(20)}# ${g.status} at import: remove it if homeostat should not keep it running` : ''}`);
    out.push(`    name: ${str(names.get(g.vmid)!)}`);
    out.push(`    node: ${str(g.node)}${nodeNames.has(g.node) ? '' : '   # TODO: node — not in /nodes at import'}`);
    out.push(`    type: ${g.type}`);
    out.push(`${pad('    layer: 1')}# TODO: layer — boot order, 1 = first (shutdown goes the other way)`);
    out.push(`${pad('    # dependsOn: []')}# TODO: dependsOn — vmids it needs running first (absent = every guest one layer down)`);
    out.push(`${pad('    # health: http://HOST/health')}# TODO: health — probed by sensing, 2xx = healthy (absent = PVE status)`);
    out.push(`${pad('    # protected: true')}# TODO: protected — every action on it then needs \`homeostat approve\``);
    if (g.maxmem) out.push(`    memMiB: ${Math.max(16, Math.round(g.maxmem / MiB))}`);
    if (g.cpus) out.push(`    cores: ${Math.max(1, Math.round(g.cpus))}`);
    if (g.maxdisk) out.push(`    diskGiB: ${Math.max(1, Math.round(g.maxdisk / GiB))}`);
  }
  return `${out.join('\n')}\n`;
}
