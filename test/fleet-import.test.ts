// `homeostat fleet import` through the real binary and the real proxmox-api client, against the
// simulator over HTTPS (its CA in PVE_CA_FILE): the manifest it writes names the cluster's nodes
// and guests, marks what the operator must fill in, validates, and validates once filled.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { startSimulator, type SimulatorHandle } from '../fleet/sim/mod.ts';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { loadFleetFile } from '../fleet/manifest.ts';
import { simApi } from '../testkit/mod.ts';
import { runCli } from './helpers/cli.ts';

let sim: SimulatorHandle;
let env: Record<string, string>;
const dir = mkdtempSync(join(tmpdir(), 'homeostat-import-'));
const ref = referenceFleet();
beforeAll(async () => {
  sim = await startSimulator({ fleet: ref, port: 0, timeScale: 0.05 });
  const ca = join(dir, 'ca.pem');
  writeFileSync(ca, sim.caPem!);
  env = { PVE_URL: sim.url, PVE_TOKEN_ID: sim.tokenId, PVE_TOKEN_SECRET: sim.tokenSecret, PVE_CA_FILE: ca, HOMEOSTAT_DATA_DIR: '/nonexistent' };
}, 30_000);
afterAll(async () => {
  await sim?.stop();
});

interface Written { name: string; nodes: { name: string; cpus?: number }[]; guests: { vmid: number; name: string; node: string; type: string; layer: number; dependsOn?: number[] }[] }

describe('fleet import', () => {
  it('writes the cluster as a manifest, layers and dependencies marked TODO; it validates, and validates once filled', async () => {
    const api = simApi({ url: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret, caPem: sim.caPem });
    await api.fault('crash', 104);
    await api.close();
    const shown = await runCli(['fleet', 'import', '--name', 'homelab'], env);
    expect(shown.code, shown.err).toBe(0);
    const m = parse(shown.out) as Written;
    expect(m.name).toBe('homelab');
    expect(m.nodes.map((n) => n.name).sort()).toEqual(ref.nodes.map((n) => n.name).sort());
    expect(m.guests.map((g) => [g.vmid, g.name, g.node, g.type])).toEqual([...ref.guests].sort((a, b) => a.vmid - b.vmid).map((g) => [g.vmid, g.name, g.node, g.type]));
    expect(m.guests.every((g) => g.layer === 1 && g.dependsOn === undefined)).toBe(true);
    expect(shown.out.match(/# TODO: layer/g)).toHaveLength(12);
    expect(shown.out.match(/# TODO: dependsOn/g)).toHaveLength(12);
    expect(shown.out).toMatch(/- vmid: 104 +# stopped at import/);

    const file = join(dir, 'fleet.yaml');
    const w = await runCli(['fleet', 'import', '--out', file], env);
    expect(w.code, w.err).toBe(0);
    expect(w.err).toMatch(/wrote .*fleet\.yaml: fleet \S+, 3 node\(s\), 12 guest\(s\); fill in the lines marked TODO/);
    const v = await runCli(['fleet', 'validate', file], env);
    expect(v.code, v.err).toBe(0);

    // refuses to overwrite; --force does
    writeFileSync(file, `${readFileSync(file, 'utf8')}# my edits\n`);
    const again = await runCli(['fleet', 'import', '--out', file], env);
    expect(again.code).toBe(2);
    expect(again.err).toMatch(/fleet\.yaml exists; pass --force to overwrite it/);
    expect(readFileSync(file, 'utf8')).toMatch(/# my edits\n$/);
    const forced = await runCli(['fleet', 'import', '--out', file, '--force'], env);
    expect(forced.code, forced.err).toBe(0);
    expect(readFileSync(file, 'utf8')).not.toMatch(/# my edits/);

    // the operator fills in the TODOs: the reference fleet's layers and dependencies
    let text = readFileSync(file, 'utf8');
    for (const g of ref.guests) {
      const deps = ref.deps.get(g.vmid) ?? [];
      text = text.replace(new RegExp(`(- vmid: ${g.vmid}\\b[^]*?)layer: 1 +# TODO: layer[^\\n]*\\n    # dependsOn: \\[\\][^\\n]*`), `$1layer: ${g.layer}\n    dependsOn: [${deps.join(', ')}]`);
    }
    writeFileSync(file, text);
    const filled = await runCli(['fleet', 'validate', file], env);
    expect(filled.code, filled.err).toBe(0);
    expect(filled.out).toMatch(/valid — fleet .*, 3 node\(s\), 12 guest\(s\), 4 layer\(s\)/);
    const f = loadFleetFile(file);
    for (const g of ref.guests) {
      expect(f.byVmid.get(g.vmid)!.layer).toBe(g.layer);
      expect(f.deps.get(g.vmid)).toEqual(ref.deps.get(g.vmid));
    }
  }, 60_000);

  it('without a PVE API to ask: one line saying what to set, exit 2', async () => {
    const r = await runCli(['fleet', 'import'], { PVE_URL: '', PVE_TOKEN_ID: '', PVE_TOKEN_SECRET: '', HOMEOSTAT_DATA_DIR: join(dir, 'none') });
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/PVE_URL\/PVE_TOKEN_ID\/PVE_TOKEN_SECRET not set/);
  });
});
