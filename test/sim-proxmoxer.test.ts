// proxmoxer (the Python client most PVE automation uses; Debian's python3-proxmoxer) against the
// simulator over HTTPS, trusting its CA: lifecycle, tasks, snapshots incl. delete, nextid, storage,
// pools, users, network, rrddata and PVE's error for a missing guest. Skipped where
// /usr/bin/python3 has no proxmoxer (apt-get install python3-proxmoxer).
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { startSimulator, type SimulatorHandle } from '../fleet/sim/mod.ts';

const PYTHON = '/usr/bin/python3';
const SCRIPT = new URL('./helpers/proxmoxer-client.py', import.meta.url).pathname;

function hasProxmoxer(): boolean {
  try {
    execFileSync(PYTHON, ['-c', 'import proxmoxer'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const available = hasProxmoxer();
if (!available) console.warn(`sim-proxmoxer: skipped, ${PYTHON} cannot import proxmoxer (apt-get install python3-proxmoxer)`);

let sim: SimulatorHandle;
let dir: string;

beforeAll(async () => {
  if (!available) return;
  sim = await startSimulator({ fleet: referenceFleet(), port: 0, timeScale: 0.01 });
  dir = mkdtempSync(join(tmpdir(), 'homeostat-proxmoxer-'));
  writeFileSync(join(dir, 'ca.pem'), sim.caPem!);
});
afterAll(async () => {
  await sim?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe.skipIf(!available)('proxmoxer against the simulator', () => {
  it('runs the calls its users make, with PVE’s answers', async () => {
    const u = new URL(sim.url);
    const env = { ...process.env, HOST: u.hostname, PORT: u.port, TOKEN_ID: sim.tokenId, TOKEN_SECRET: sim.tokenSecret, CA_FILE: join(dir, 'ca.pem'), VMID: '101' };
    const stdout = await new Promise<string>((resolve, reject) => {
      execFile(PYTHON, [SCRIPT], { env, timeout: 60_000 }, (err, out, errOut) => (err ? reject(new Error(`${err.message}\n${errOut}`)) : resolve(out)));
    });
    const r = JSON.parse(stdout) as Record<string, unknown>;
    expect(r).toMatchObject({
      version: '9.0', nodes: ['node-a', 'node-b', 'node-c'], nextid: 103, guests: 12,
      status: 'running', stop: 'OK', after_stop: 'stopped', start: 'OK',
      snapshot: 'OK', snapshots: ['proxmoxer', 'current'], delsnapshot: 'OK', snapshots_after: ['current'],
      storage: ['local', 'local-lvm'], pools: ['layer1', 'layer2', 'layer3', 'layer4'], bridge: ['10.10.0.13'], rrd_rows: 70, hostname: 'omada21',
      missing: { status: 500, message: "Configuration file 'nodes/node-c/lxc/999999.conf' does not exist" },
    });
    expect(r.users).toContain(sim.tokenId.split('!')[0]);
  });
});
