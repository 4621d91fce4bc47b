// The manifest never ignores a key silently: unknown keys are errors with "did you mean", every
// problem is reported at once, and the shipped example (every key) is valid.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildFleet, didYouMean, loadFleetFile, ManifestError } from '../fleet/manifest.ts';

const BIN = new URL('../bin/homeostat.js', import.meta.url).pathname;
const EXAMPLE = new URL('../fleet.example.yaml', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'homeostat-manifest-'));

describe('fleet manifest', () => {
  it('unknown keys are errors that suggest the key meant, all at once', () => {
    const bad = {
      nodes: [{ name: 'pve1' }],
      guests: [{ vmid: 100, name: 'dns', node: 'pve1', layer: 1, protect: true }, { vmid: 101, name: 'web', node: 'pve1', layer: 2, dependson: [100] }],
      policies: { cooldown: 5, alerts: { cpuPercent: 90 } },
    };
    let err: unknown;
    try {
      buildFleet(bad);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ManifestError);
    expect((err as ManifestError).problems).toHaveLength(4);
    expect((err as ManifestError).problems).toEqual(expect.arrayContaining([
      'guests[0]: unknown key "protect" — did you mean "protected"?',
      'guests[1]: unknown key "dependson" — did you mean "dependsOn"?',
      'policies: unknown key "cooldown" — did you mean "cooldownMs"?',
      'policies.alerts: unknown key "cpuPercent" — did you mean "cpuPct"?',
    ]));
    expect((err as ManifestError).message).toMatch(/^4 problems: /);
  });

  it('semantic problems are all reported too', () => {
    expect(() => buildFleet({ nodes: [{ name: 'a' }, { name: 'a' }], guests: [{ vmid: 100, name: 'x', node: 'b', layer: 1 }, { vmid: 100, name: 'x', node: 'a', layer: 1 }] }))
      .toThrow(/4 problems: nodes\[1\]\.name: duplicate node a; guests\[0\]\.node: unknown node b; guests\[1\]\.vmid: duplicate vmid 100; guests\[1\]\.name: duplicate name x/);
  });

  it('a key far from any known one gets the list instead of a guess', () => {
    expect(didYouMean('banana', ['vmid', 'name', 'node'])).toBeUndefined();
    expect(() => buildFleet({ nodes: [{ name: 'a', banana: 1 }], guests: [] })).toThrow(/nodes\[0\]: unknown key "banana" \(known: name, role, cpus, memGiB, capacity\)/);
  });

  it('fleet.example.yaml (every key) is valid', () => {
    const f = loadFleetFile(EXAMPLE);
    expect(f.guests.map((g) => g.vmid)).toEqual([101, 102]);
    expect(f.byVmid.get(101)!.protected).toBe(true);
  });

  it('`homeostat fleet validate` prints every problem, one per line, exit 2; a valid file exit 0', () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'nodes:\n  - name: pve1\nguests:\n  - { vmid: 100, name: dns, node: pve1, layer: 1, protect: true }\npolicies:\n  cooldown: 5\n');
    const bad = spawnSync(process.execPath, [BIN, 'fleet', 'validate', file], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')).toEqual([
      `${file}: 2 problem(s)`,
      '  guests[0]: unknown key "protect" — did you mean "protected"?',
      '  policies: unknown key "cooldown" — did you mean "cooldownMs"?',
    ]);
    const ok = spawnSync(process.execPath, [BIN, 'fleet', 'validate', EXAMPLE], { encoding: 'utf8' });
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/valid — fleet homelab, 2 node\(s\), 2 guest\(s\)/);
  });
});
