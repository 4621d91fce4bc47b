// `homeostat sim` as a user runs it: one JSON ready line, a working API, clean exit on SIGTERM;
// bad flags and manifests: one line on stderr, exit 2.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fetch } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';

const BIN = new URL('../bin/homeostat.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'homeostat-sim-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function run(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [BIN, 'sim', ...args], { env: { ...process.env, LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const firstLine = new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.once('line', resolve);
    child.once('exit', () => reject(new Error(`exited before a ready line: ${stderr}`)));
  });
  firstLine.catch(() => undefined); // tests that expect a failure never read it
  return { child, exit, firstLine, stderr: () => stderr };
}

describe('homeostat sim', () => {
  it('prints one ready line, serves the API with the env token, exits 0 on SIGTERM', async () => {
    const secret = '0b5c8f1e-0000-4000-8000-000000000001';
    const p = run(['--port', '0', '--http', '--time-scale', '0.1'], { PVE_TOKEN_ID: 'ops@pve!twin', PVE_TOKEN_SECRET: secret });
    const ready = JSON.parse(await p.firstLine);
    expect(ready).toEqual({ ready: true, url: expect.stringMatching(/^http:\/\/127\.0\.0\.1:\d+$/), tokenId: 'ops@pve!twin', tokenSecret: secret, guests: 12, nodes: 3 });
    const r = await fetch(`${ready.url}/api2/json/cluster/resources?type=vm`, { headers: { Authorization: `PVEAPIToken=ops@pve!twin=${secret}` } });
    expect(r.status).toBe(200);
    expect(((await r.json()) as { data: unknown[] }).data).toHaveLength(12);
    p.child.kill('SIGTERM');
    expect(await p.exit).toBe(0);
  });

  it('serves HTTPS by default and reports the certificate fingerprint; loads a fleet file', async () => {
    const file = join(dir, 'fleet.yaml');
    writeFileSync(file, 'name: tiny\nnodes:\n  - name: pve1\nguests:\n  - { vmid: 100, name: dns, node: pve1, layer: 1 }\n');
    const p = run(['--port', '0', '--fleet', file]);
    const ready = JSON.parse(await p.firstLine);
    expect(ready).toMatchObject({ url: expect.stringMatching(/^https:/), fingerprint: expect.stringMatching(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/), guests: 1, nodes: 1 });
    expect(ready.tokenSecret).toMatch(/^[0-9a-f-]{36}$/);
    p.child.kill('SIGINT');
    expect(await p.exit).toBe(0);
  });

  it.each([
    [['--port', 'abc'], /--port/],
    [['--bogus'], /bogus/],
    [['--time-scale', '-1'], /--time-scale/],
    [['--token-id', 'nobody', '--port', '0', '--http'], /token id 'nobody'/],
    [['--fleet', '/nonexistent/fleet.yaml'], /HOMEOSTAT_ERR_MANIFEST: \/nonexistent\/fleet.yaml/],
  ])('%j: one line on stderr naming the problem, exit 2', async (args, msg) => {
    const p = run(args);
    expect(await p.exit).toBe(2);
    const lines = p.stderr().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(msg);
  });

  it('names the manifest path of a bad fleet file', async () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ nodes: [{ name: 'pve1' }], guests: [{ vmid: 100, name: 'x', node: 'pve9', layer: 1 }] }));
    const p = run(['--fleet', file]);
    expect(await p.exit).toBe(2);
    expect(p.stderr()).toMatch(/guests\[0\]\.node: unknown node pve9/);
  });

  it('--help prints usage and exits 0', async () => {
    const p = run(['--help']);
    expect(await p.firstLine).toMatch(/^Usage: homeostat sim/);
    expect(await p.exit).toBe(0);
  });
});
