// Guest operations run as PVE tasks: UPIDs in PVE's format, status running → stopped with an
// exit status, logs, the task index with its filters, PVE's prechecks and the per-guest flock,
// migration, snapshots and rollback.
import proxmoxApi, { type ProxmoxEngineOptions } from 'proxmox-api';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../core/mod.ts';
import { buildFleet } from '../fleet/manifest.ts';
import { startSimulator, type SimulatorHandle } from '../fleet/sim/mod.ts';

type Nav = { [k: string]: Nav } & { $(id: string | number): Nav; $get(p?: Record<string, unknown>): Promise<any>; $post(p?: Record<string, unknown>): Promise<any>; $put(p?: Record<string, unknown>): Promise<any> };
interface TaskStatus { status: 'running' | 'stopped'; exitstatus?: string; type: string; id: string; upid: string; node: string }

const FLEET = {
  name: 'tasks',
  nodes: [{ name: 'node-a' }, { name: 'node-b' }, { name: 'node-c' }],
  guests: [
    { vmid: 101, name: 'slow-boot', node: 'node-a', layer: 1, bootMs: 4000, shutdownMs: 2000 },
    { vmid: 102, name: 'mover', node: 'node-a', layer: 1, bootMs: 2000, shutdownMs: 1000 },
    { vmid: 103, name: 'vm', node: 'node-b', type: 'qemu', layer: 2, bootMs: 2000, shutdownMs: 1000 },
    { vmid: 104, name: 'snappy', node: 'node-b', layer: 2, bootMs: 1000, shutdownMs: 1000 },
    { vmid: 105, name: 'runner', node: 'node-c', layer: 2, bootMs: 1000, shutdownMs: 1000 },
  ],
};
const UPID_RE = /^UPID:([a-z0-9-]+):([0-9A-F]{8}):([0-9A-F]{8}):([0-9A-F]{8}):([a-z]+):(\d+):homeostat@pve!sim:$/;

function client(sim: SimulatorHandle): Nav {
  const u = new URL(sim.url);
  return proxmoxApi({ host: u.hostname, port: Number(u.port), schema: 'http', tokenID: sim.tokenId, tokenSecret: sim.tokenSecret, fetch: fetch as unknown as ProxmoxEngineOptions['fetch'] }) as unknown as Nav;
}

let sim: SimulatorHandle;
let api: Nav;
const ct = (node: string, vmid: number) => api.nodes.$(node).lxc.$(vmid);
const status = async (node: string, upid: string): Promise<TaskStatus> => api.nodes.$(node).tasks.$(upid).status.$get();

async function waitTask(node: string, upid: string, onPoll?: () => Promise<void>): Promise<TaskStatus> {
  for (let i = 0; i < 1000; i++) {
    const s = await status(node, upid);
    if (s.status === 'stopped') return s;
    await onPoll?.();
    await sleep(5);
  }
  throw new Error(`task ${upid} still running`);
}

async function raw(method: string, path: string, form?: Record<string, string>) {
  const r = await fetch(new URL(`/api2/json${path}`, sim.url), {
    method, body: form ? new URLSearchParams(form).toString() : undefined,
    headers: { Authorization: `PVEAPIToken=${sim.tokenId}=${sim.tokenSecret}`, ...(form ? { 'Content-Type': 'application/x-www-form-urlencoded' } : {}) },
  });
  return { status: r.status, statusText: r.statusText, body: (await r.json()) as { data: any; errors?: Record<string, string>; total?: number } };
}

beforeAll(async () => {
  sim = await startSimulator({ fleet: buildFleet(FLEET), port: 0, http: true, timeScale: 0.05 });
  api = client(sim);
});
afterAll(() => sim?.stop());

describe('start as a task', () => {
  it('returns a UPID; the guest runs (task OK) about a second in, its health says starting until bootMs', async () => {
    await waitTask('node-a', await ct('node-a', 101).status.stop.$post());
    const g = sim.state.model.guests.get(101)!;
    g.bootMs = 40_000; // × timeScale 0.05: 2 s of services coming up after the process runs
    const upid: string = await ct('node-a', 101).status.start.$post();
    const m = UPID_RE.exec(upid)!;
    expect(m.slice(1).filter((_, i) => i === 0 || i >= 4)).toEqual(['node-a', 'vzstart', '101']);
    const first = await status('node-a', upid);
    expect(first).toMatchObject({ type: 'vzstart', id: '101', node: 'node-a', upid, user: 'homeostat@pve!sim' });
    const done = await waitTask('node-a', upid);
    expect(done.exitstatus).toBe('OK');
    // the start task is over, the guest runs, its services do not answer yet
    expect(await ct('node-a', 101).status.current.$get()).toMatchObject({ status: 'running', vmid: 101 });
    const h = await fetch(new URL('/sim/health/101', sim.url), { headers: { Authorization: `PVEAPIToken=${sim.tokenId}=${sim.tokenSecret}` } });
    expect([h.status, ((await h.json()) as { status: string }).status]).toEqual([503, 'starting']);
    expect(g.phase).toBe('booting');
    const log: { n: number; t: string }[] = await api.nodes.$('node-a').tasks.$(upid).log.$get();
    expect(log.at(-1)).toEqual({ n: log.length, t: 'TASK OK' });
    g.bootMs = 4000;
    for (let i = 0; i < 1000 && g.phase !== 'running'; i++) await new Promise((r) => setTimeout(r, 5));
    expect(g.phase).toBe('running');
  });

  it('refuses to start a running CT (500), a running VM fails in its task', async () => {
    const r = await raw('POST', '/nodes/node-c/lxc/105/status/start');
    expect([r.status, r.statusText]).toEqual([500, 'CT 105 already running']);
    const done = await waitTask('node-b', await api.nodes.$('node-b').qemu.$(103).status.start.$post());
    expect(done).toMatchObject({ type: 'qmstart', exitstatus: 'VM 103 already running' });
    const log: { t: string }[] = await api.nodes.$('node-b').tasks.$(done.upid).log.$get();
    expect(log.at(-1)?.t).toBe('TASK ERROR: VM 103 already running');
  });

  it('refuses to stop or shut down a stopped CT', async () => {
    await waitTask('node-b', await ct('node-b', 104).status.stop.$post());
    expect((await raw('POST', '/nodes/node-b/lxc/104/status/stop')).statusText).toBe('CT 104 not running');
    expect((await raw('POST', '/nodes/node-b/lxc/104/status/shutdown')).statusText).toBe('CT 104 not running');
    expect((await raw('POST', '/nodes/node-b/lxc/104/status/reboot')).statusText).toBe('VM 104 not running');
  });

  it('a second start queues on the guest flock and then fails: already running', async () => {
    // at time scale 1 the start task holds the flock for the second it takes the process to run
    const slow = await startSimulator({ fleet: buildFleet(FLEET), port: 0, http: true, timeScale: 1, initial: 'stopped' });
    try {
      const c = client(slow).nodes.$('node-b').lxc.$(104);
      const a: string = await c.status.start.$post();
      const b: string = await c.status.start.$post();
      const st = (upid: string): Promise<TaskStatus> => client(slow).nodes.$('node-b').tasks.$(upid).status.$get();
      expect((await st(b)).status).toBe('running');
      const until = async (upid: string) => {
        for (let i = 0; i < 1000; i++) {
          const s = await st(upid);
          if (s.status === 'stopped') return s;
          await new Promise((r) => setTimeout(r, 10));
        }
        throw new Error('still running');
      };
      expect((await until(a)).exitstatus).toBe('OK');
      expect((await until(b)).exitstatus).toBe('CT 104 already running');
    } finally {
      await slow.stop();
    }
  });
});

describe('shutdown, stop, reboot', () => {
  it('shutdown keeps reporting running until shutdownMs passed, then stopped', async () => {
    const upid: string = await ct('node-a', 101).status.shutdown.$post();
    expect((await ct('node-a', 101).status.current.$get()).status).toBe('running');
    expect(await waitTask('node-a', upid)).toMatchObject({ type: 'vzshutdown', exitstatus: 'OK' });
    expect((await ct('node-a', 101).status.current.$get()).status).toBe('stopped');
  });

  it('a shutdown that needs longer than its timeout fails and leaves the guest running; forceStop stops it', async () => {
    await waitTask('node-a', await ct('node-a', 101).status.start.$post());
    const failed = await waitTask('node-a', await ct('node-a', 101).status.shutdown.$post({ timeout: 0 }));
    expect(failed.exitstatus).toBe('container did not stop');
    expect((await ct('node-a', 101).status.current.$get()).status).toBe('running');
    const forced = await waitTask('node-a', await ct('node-a', 101).status.shutdown.$post({ timeout: 0, forceStop: true }));
    expect(forced.exitstatus).toBe('OK');
    expect((await ct('node-a', 101).status.current.$get()).status).toBe('stopped');
  });

  it('reboot goes down and up again: running with a fresh uptime', async () => {
    const done = await waitTask('node-c', await ct('node-c', 105).status.reboot.$post());
    expect(done).toMatchObject({ type: 'vzreboot', exitstatus: 'OK' });
    const g = await ct('node-c', 105).status.current.$get();
    expect(g.status).toBe('running');
    expect(g.uptime).toBeLessThan(60);
  });
});

describe('migrate', () => {
  it('moves a stopped CT: the old node no longer knows it', async () => {
    await waitTask('node-a', await ct('node-a', 102).status.stop.$post());
    const done = await waitTask('node-a', await ct('node-a', 102).migrate.$post({ target: 'node-c' }));
    expect(done).toMatchObject({ type: 'vzmigrate', exitstatus: 'OK' });
    const log: { t: string }[] = await api.nodes.$('node-a').tasks.$(done.upid).log.$get();
    expect(log.map((l) => l.t).join('\n')).toMatch(/starting migration of CT 102 to node 'node-c'[\s\S]*migration finished successfully/);
    expect((await raw('GET', '/nodes/node-a/lxc/102/status/current')).statusText).toBe("Configuration file 'nodes/node-a/lxc/102.conf' does not exist");
    expect((await ct('node-c', 102).status.current.$get()).status).toBe('stopped');
    const vms: { vmid: number; node: string }[] = await api.cluster.resources.$get({ type: 'vm' });
    expect(vms.filter((v) => v.vmid === 102)).toEqual([expect.objectContaining({ node: 'node-c' })]);
  });

  it('a running CT needs restart=1 (like PVE); with it, it ends up running on the target', async () => {
    const refused = await waitTask('node-c', await ct('node-c', 105).migrate.$post({ target: 'node-b' }));
    expect(refused.exitstatus).toBe('migration aborted');
    const log: { t: string }[] = await api.nodes.$('node-c').tasks.$(refused.upid).log.$get();
    expect(log.map((l) => l.t).join('\n')).toMatch(/running container can only be migrated in restart mode/);
    const online = await waitTask('node-c', await ct('node-c', 105).migrate.$post({ target: 'node-b', online: true }));
    expect(online.exitstatus).toBe('migration aborted');
    const ok = await waitTask('node-c', await ct('node-c', 105).migrate.$post({ target: 'node-b', restart: true }));
    expect(ok.exitstatus).toBe('OK');
    expect((await ct('node-b', 105).status.current.$get()).status).toBe('running');
  });

  it('refuses the local node as target (400) and an unknown node (500)', async () => {
    const local = await raw('POST', '/nodes/node-b/lxc/105/migrate', { target: 'node-b' });
    expect([local.status, local.body.errors]).toEqual([400, { target: 'target is local node.' }]);
    const unknown = await raw('POST', '/nodes/node-b/lxc/105/migrate', { target: 'node-z' });
    expect([unknown.status, unknown.statusText]).toEqual([500, "no such cluster node 'node-z'"]);
  });

  it('live-migrates a running VM with online=1', async () => {
    const done = await waitTask('node-b', await api.nodes.$('node-b').qemu.$(103).migrate.$post({ target: 'node-a', online: true }));
    expect(done).toMatchObject({ type: 'qmigrate', exitstatus: 'OK' });
    expect((await api.nodes.$('node-a').qemu.$(103).status.current.$get()).status).toBe('running');
  });
});

describe('snapshot and rollback', () => {
  it('snapshots, rolls back the config, and starts again with start=1', async () => {
    const snap = await waitTask('node-b', await ct('node-b', 104).snapshot.$post({ snapname: 'pre', description: 'before' }));
    expect(snap).toMatchObject({ type: 'vzsnapshot', exitstatus: 'OK' });
    const again = await waitTask('node-b', await ct('node-b', 104).snapshot.$post({ snapname: 'pre' }));
    expect(again.exitstatus).toBe("snapshot name 'pre' already used");
    await ct('node-b', 104).config.$put({ hostname: 'changed', memory: 2048 });
    expect((await ct('node-b', 104).config.$get()).hostname).toBe('changed');
    const list: { name: string; parent?: string }[] = await ct('node-b', 104).snapshot.$get();
    expect(list).toEqual([expect.objectContaining({ name: 'pre', description: 'before' }), expect.objectContaining({ name: 'current', parent: 'pre' })]);
    const rb = await waitTask('node-b', await ct('node-b', 104).snapshot.$('pre').rollback.$post({ start: true }));
    expect(rb).toMatchObject({ type: 'vzrollback', exitstatus: 'OK' });
    expect(await ct('node-b', 104).config.$get()).toMatchObject({ hostname: 'snappy', memory: 1024 });
    expect((await ct('node-b', 104).status.current.$get()).status).toBe('running');
    const missing = await waitTask('node-b', await ct('node-b', 104).snapshot.$('nope').rollback.$post());
    expect(missing.exitstatus).toBe("snapshot 'nope' does not exist");
  });
});

describe('task index, status and log', () => {
  it('filters like PVE: source, typefilter, vmid, errors, statusfilter, paging with total', async () => {
    // a slow shutdown is the task to catch running; a stop overrules it
    const g = sim.state.model.guests.get(101)!;
    if (g.phase !== 'running') await waitTask('node-a', await ct('node-a', 101).status.start.$post());
    g.shutdownMs = 200_000;
    const running: string = await ct('node-a', 101).status.shutdown.$post();
    const active = await raw('GET', `/nodes/node-a/tasks?source=active`);
    expect(active.body.data.map((t: { upid: string }) => t.upid)).toContain(running);
    const archive = await raw('GET', `/nodes/node-a/tasks`);
    expect(archive.body.data.map((t: { upid: string }) => t.upid)).not.toContain(running);
    await waitTask('node-a', await ct('node-a', 101).status.stop.$post({ 'overrule-shutdown': 1 }));
    expect((await waitTask('node-a', running)).exitstatus).toBe('interrupted by signal');
    g.shutdownMs = 2000;
    await waitTask('node-a', await ct('node-a', 101).status.start.$post());
    const starts = await raw('GET', '/nodes/node-a/tasks?typefilter=vzstart&vmid=101');
    expect(starts.body.data.length).toBeGreaterThanOrEqual(2);
    expect(starts.body.data.every((t: { type: string; id: string }) => t.type === 'vzstart' && t.id === '101')).toBe(true);
    expect(starts.body.data[0]).toMatchObject({ status: 'OK', endtime: expect.any(Number) });
    const errors = await raw('GET', '/nodes/node-a/tasks?errors=1');
    expect(errors.body.data.length).toBeGreaterThan(0);
    expect(errors.body.data.every((t: { status: string }) => t.status !== 'OK')).toBe(true);
    expect((await raw('GET', '/nodes/node-a/tasks?statusfilter=error')).body.data).toEqual(errors.body.data);
    const page = await raw('GET', '/nodes/node-a/tasks?limit=1&start=1');
    expect(page.body.data).toHaveLength(1);
    expect(page.body.total).toBe((await raw('GET', '/nodes/node-a/tasks?limit=1000')).body.data.length);
  });

  it('refuses unknown, malformed and foreign UPIDs with a 400 on upid', async () => {
    const [t] = (await raw('GET', '/nodes/node-a/tasks?limit=1')).body.data as { upid: string }[];
    expect((await raw('GET', `/nodes/node-b/tasks/${encodeURIComponent(t.upid)}/status`)).body.errors).toEqual({ upid: 'no such task' });
    expect((await raw('GET', '/nodes/node-a/tasks/garbage/status')).body.errors).toEqual({ upid: 'unable to parse worker upid' });
    const unknown = t.upid.replace(/:[0-9A-F]{8}:/, ':0000ABCD:');
    expect((await raw('GET', `/nodes/node-a/tasks/${encodeURIComponent(unknown)}/log`)).status).toBe(400);
  });

  it('pages the log with start/limit', async () => {
    const [t] = (await raw('GET', '/nodes/node-a/tasks?typefilter=vzmigrate')).body.data as { upid: string }[];
    const all = await raw('GET', `/nodes/node-a/tasks/${encodeURIComponent(t.upid)}/log`);
    expect(all.body.data.length).toBeGreaterThan(2);
    const second = await raw('GET', `/nodes/node-a/tasks/${encodeURIComponent(t.upid)}/log?start=1&limit=1`);
    expect(second.body.data).toEqual([all.body.data[1]]);
    expect(second.body.total).toBe(all.body.data.length);
  });
});

describe('config locks', () => {
  it('a guest in a snapshot is locked: status shows lock, config changes fail with CT is locked (snapshot)', async () => {
    const slow = await startSimulator({ fleet: buildFleet(FLEET), port: 0, http: true, timeScale: 1 });
    try {
      const api1 = client(slow);
      const upid: string = await api1.nodes.$('node-b').lxc.$(104).snapshot.$post({ snapname: 'locked' });
      expect((await api1.nodes.$('node-b').lxc.$(104).status.current.$get()).lock).toBe('snapshot');
      await expect(api1.nodes.$('node-b').lxc.$(104).config.$put({ hostname: 'x' })).rejects.toThrow(/CT is locked \(snapshot\)/);
      for (;;) {
        const s = await api1.nodes.$('node-b').tasks.$(upid).status.$get();
        if (s.status === 'stopped') break;
        await sleep(20);
      }
      expect((await api1.nodes.$('node-b').lxc.$(104).status.current.$get()).lock).toBeUndefined();
    } finally {
      await slow.stop();
    }
  });
});
