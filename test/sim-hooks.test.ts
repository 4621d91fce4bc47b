// The twin runs a guest's hookscript the way PVE does: `<script> <vmid> <phase>` on pre-start,
// post-start, pre-stop and post-stop (post-stop after a crash too), its output in the task log,
// a failing pre-start aborting the start, a bad volume refused like PVE. The script here records
// its calls; sensing-hooks.test.ts runs the shipped deploy/pve/homeostat-hook end to end.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import proxmoxApi, { type ProxmoxEngineOptions } from 'proxmox-api';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { startSimulator, type SimulatorHandle } from '../fleet/sim/mod.ts';

type Nav = { [k: string]: Nav } & { $(id: string | number): Nav; $get(p?: Record<string, unknown>): Promise<any>; $post(p?: Record<string, unknown>): Promise<any>; $put(p?: Record<string, unknown>): Promise<any> };

let sim: SimulatorHandle;
let api: Nav;
let dir: string;
const calls = () => readFileSync(join(dir, 'calls'), 'utf8').split('\n').filter(Boolean);

async function waitTask(node: string, upid: string): Promise<{ exitstatus?: string }> {
  for (let i = 0; i < 2000; i++) {
    const s = await api.nodes.$(node).tasks.$(upid).status.$get();
    if (s.status === 'stopped') return s;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`task ${upid} still running`);
}

async function until(fn: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !fn(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(fn()).toBe(true);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'homeostat-hooks-'));
  writeFileSync(join(dir, 'calls'), '');
  // records each call; refuses to let 102 start
  writeFileSync(join(dir, 'record'), `#!/bin/sh\necho "$1 $2 $HOMEOSTAT_NODE" >> "${join(dir, 'calls')}"\necho "hook saw $2"\n[ "$1 $2" = "102 pre-start" ] && exit 3\nexit 0\n`);
  chmodSync(join(dir, 'record'), 0o755);
  writeFileSync(join(dir, 'not-executable'), '#!/bin/sh\nexit 0\n');
  sim = await startSimulator({ fleet: referenceFleet(), port: 0, http: true, timeScale: 0.01, snippetsDir: dir, hookscript: 'local:snippets/record' });
  const u = new URL(sim.url);
  api = proxmoxApi({ host: u.hostname, port: Number(u.port), schema: 'http', tokenID: sim.tokenId, tokenSecret: sim.tokenSecret, fetch: fetch as unknown as ProxmoxEngineOptions['fetch'] }) as unknown as Nav;
});
afterAll(async () => {
  await sim?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('hookscripts in the twin', () => {
  it('stop and start run pre-stop, post-stop, pre-start, post-start on the guest’s node, output in the task log', async () => {
    const ct = api.nodes.$('node-c').lxc.$(101);
    expect((await ct.config.$get()).hookscript).toBe('local:snippets/record');
    await waitTask('node-c', await ct.status.stop.$post());
    await until(() => calls().includes('101 post-stop node-c'));
    const start: string = await ct.status.start.$post();
    await waitTask('node-c', start);
    expect(calls().filter((c) => c.startsWith('101 '))).toEqual(['101 pre-stop node-c', '101 post-stop node-c', '101 pre-start node-c', '101 post-start node-c']);
    const log = (await api.nodes.$('node-c').tasks.$(start).log.$get()).map((l: { t: string }) => l.t);
    expect(log).toEqual(['hook saw pre-start', 'hook saw post-start', 'TASK OK']);
  });

  it('a crash runs post-stop (qmeventd / the LXC stop hook), with no task', async () => {
    sim.state.faults.inject({ kind: 'crash', target: '155' });
    await until(() => calls().includes('155 post-stop node-b'));
    expect(calls().filter((c) => c.startsWith('155 '))).toEqual(['155 post-stop node-b']);
  });

  it('a failing pre-start aborts the start with PVE’s message; the guest stays stopped', async () => {
    const ct = api.nodes.$('node-c').lxc.$(102);
    await waitTask('node-c', await ct.status.stop.$post());
    const done = await waitTask('node-c', await ct.status.start.$post());
    expect(done.exitstatus).toMatch(/^hookscript error for 102 on pre-start: command '.*\/record 102 pre-start' failed: exit code 3$/);
    expect((await ct.status.current.$get()).status).toBe('stopped');
  });

  it('the hookscript option is set through the config like on PVE; a missing or non-executable script fails the start', async () => {
    const ct = api.nodes.$('node-b').lxc.$(104);
    await ct.config.$put({ hookscript: 'local:snippets/not-executable' });
    await waitTask('node-b', await ct.status.stop.$post());
    expect((await waitTask('node-b', await ct.status.start.$post())).exitstatus).toBe("hookscript error for 104 on pre-start: script 'local:snippets/not-executable' is not executable");
    await ct.config.$put({ hookscript: 'local:snippets/missing' });
    expect((await waitTask('node-b', await ct.status.start.$post())).exitstatus).toBe("hookscript error for 104 on pre-start: script 'local:snippets/missing' does not exist");
    await ct.config.$put({ delete: 'hookscript' });
    expect((await waitTask('node-b', await ct.status.start.$post())).exitstatus).toBe('OK');
    const bad = await fetch(new URL('/api2/json/nodes/node-b/lxc/104/config', sim.url), {
      method: 'PUT', body: 'hookscript=local:iso/x', headers: { Authorization: `PVEAPIToken=${sim.tokenId}=${sim.tokenSecret}`, 'Content-Type': 'application/x-www-form-urlencoded' },
    });
    expect([bad.status, bad.statusText]).toEqual([500, "'local:iso/x' is not in the snippets directory"]);
  });
});
