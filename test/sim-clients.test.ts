// What real clients (proxmoxer, Ansible's proxmox modules, the web UI) reach for next to the guest
// calls answers from the twin's model, through the real proxmox-api client: free vmids, storage
// that a disk-fill fills, the token's own user and permissions, pools with members, addresses,
// RRD history, snapshot deletion, directory indexes; and /api2/extjs answers like PVE's web UI API.
import proxmoxApi, { type ProxmoxEngineOptions } from 'proxmox-api';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../core/mod.ts';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { startSimulator, type SimulatorHandle } from '../fleet/sim/mod.ts';

type Nav = { [k: string]: Nav } & { $(id: string | number): Nav; $get(p?: Record<string, unknown>): Promise<any>; $post(p?: Record<string, unknown>): Promise<any>; $delete(p?: Record<string, unknown>): Promise<any> };

let sim: SimulatorHandle;
let api: Nav;
let auth: string;

async function waitTask(node: string, upid: string): Promise<{ status: string; exitstatus?: string }> {
  for (let i = 0; i < 2000; i++) {
    const s = await api.nodes.$(node).tasks.$(upid).status.$get();
    if (s.status === 'stopped') return s;
    await sleep(5);
  }
  throw new Error(`task ${upid} still running`);
}

async function raw(path: string, init: { method?: string; auth?: string | null } = {}) {
  const headers: Record<string, string> = init.auth === null ? {} : { Authorization: init.auth ?? auth };
  const r = await fetch(new URL(path, sim.url), { method: init.method ?? 'GET', headers });
  return { status: r.status, statusText: r.statusText, body: (await r.json()) as Record<string, any> };
}

beforeAll(async () => {
  sim = await startSimulator({ fleet: referenceFleet(), port: 0, http: true, timeScale: 0.01, metricsIntervalMs: 0 });
  auth = `PVEAPIToken=${sim.tokenId}=${sim.tokenSecret}`;
  const u = new URL(sim.url);
  api = proxmoxApi({ host: u.hostname, port: Number(u.port), schema: 'http', tokenID: sim.tokenId, tokenSecret: sim.tokenSecret, fetch: fetch as unknown as ProxmoxEngineOptions['fetch'] }) as unknown as Nav;
});
afterAll(() => sim?.stop());

describe('ids, storage, access, pools', () => {
  it('nextid: the lowest free vmid; a taken one is refused like PVE', async () => {
    expect(await api.cluster.nextid.$get()).toBe(103); // 100-102 are in the reference fleet
    expect(await api.cluster.nextid.$get({ vmid: 5000 })).toBe(5000);
    const taken = await raw('/api2/json/cluster/nextid?vmid=101');
    expect([taken.status, taken.body.errors]).toEqual([400, { vmid: 'VM 101 already exists' }]);
  });

  it('storage: local-lvm holds the guests; a disk-fill on a guest raises its node’s usage', async () => {
    const ids = (await api.storage.$get()).map((s: { storage: string }) => s.storage);
    expect(ids).toEqual(['local', 'local-lvm']);
    const before = await api.nodes.$('node-b').storage.$('local-lvm').status.$get();
    const fault = sim.state.faults.inject({ kind: 'disk-fill', target: 159 });
    const after = await api.nodes.$('node-b').storage.$('local-lvm').status.$get();
    sim.state.faults.heal(fault.id);
    expect(after.used).toBeGreaterThan(before.used);
    expect(after.avail).toBe(after.total - after.used);
    const listed = (await api.nodes.$('node-b').storage.$get({ content: 'snippets' })).map((s: { storage: string }) => s.storage);
    expect(listed).toEqual(['local']); // where a hookscript lives
    const missing = await raw('/api2/json/nodes/node-b/storage/nfs/status');
    expect([missing.status, missing.statusText]).toEqual([500, "storage 'nfs' does not exist"]);
  });

  it('users, tokens and permissions are those of the token in use', async () => {
    const [user, token] = sim.tokenId.split('!');
    const list = await api.access.users.$get({ full: true });
    const me = list.find((u: { userid: string }) => u.userid === user);
    expect(me.tokens.map((t: { tokenid: string }) => t.tokenid)).toEqual([token]);
    expect((await api.access.users.$(user).token.$get()).map((t: { tokenid: string }) => t.tokenid)).toEqual([token]);
    expect(Object.keys((await api.access.users.$(user).$get()).tokens)).toEqual([token]);
    const perms = await api.access.permissions.$get({ path: '/vms/101' });
    expect(perms['/vms/101']).toMatchObject({ 'VM.PowerMgmt': 1, 'VM.Audit': 1 });
    expect(perms['/vms/101']['VM.Allocate']).toBeUndefined();
    const nobody = await raw('/api2/json/access/users/nobody@pve');
    expect(nobody.statusText).toBe("no such user ('nobody@pve')");
    expect((await api.access.domains.$get()).map((d: { realm: string }) => d.realm)).toEqual(['pam', 'pve']);
  });

  it('pools: one per boot layer, with its guests as members', async () => {
    const pools = (await api.pools.$get()).map((p: { poolid: string }) => p.poolid);
    expect(pools).toEqual(['layer1', 'layer2', 'layer3', 'layer4']);
    const layer1 = await api.pools.$('layer1').$get();
    expect(layer1.members.map((m: { vmid: number }) => m.vmid)).toEqual([101, 102, 120]);
    expect(layer1.members[0]).toMatchObject({ id: 'lxc/101', type: 'lxc', node: 'node-c', status: 'running' });
  });
});

describe('guests', () => {
  it('interfaces: the config’s MAC with an address; a stopped CT has none', async () => {
    const ifaces = await api.nodes.$('node-c').lxc.$(101).interfaces.$get();
    const eth0 = ifaces.find((i: { name: string }) => i.name === 'eth0');
    const conf = await api.nodes.$('node-c').lxc.$(101).config.$get();
    expect(conf.net0).toContain(`hwaddr=${eth0.hwaddr}`);
    expect(eth0.inet).toMatch(/^10\.20\.\d+\.\d+\/16$/);
    await waitTask('node-c', await api.nodes.$('node-c').lxc.$(102).status.stop.$post());
    expect((await raw('/api2/json/nodes/node-c/lxc/102/interfaces')).statusText).toBe('CT 102 not running');
  });

  it('rrddata: 70 rows of the timeframe, the latest from the metrics the twin keeps', async () => {
    sim.state.model.tick(1);
    const rows = await api.nodes.$('node-c').lxc.$(101).rrddata.$get({ timeframe: 'hour' });
    expect(rows).toHaveLength(70);
    expect(rows[0].cpu).toBeUndefined(); // before the twin started: time only, like unknown RRD values
    expect(rows[69]).toMatchObject({ maxcpu: 1, maxmem: expect.any(Number), cpu: expect.any(Number) });
    const node = await api.nodes.$('node-b').rrddata.$get({ timeframe: 'day', cf: 'MAX' });
    expect(node[69]).toMatchObject({ maxcpu: expect.any(Number), memtotal: expect.any(Number) });
  });

  it('the directory index and pending list the guest', async () => {
    const dirs = (await api.nodes.$('node-c').lxc.$(101).$get()).map((d: { subdir: string }) => d.subdir);
    expect(dirs).toEqual(expect.arrayContaining(['config', 'status', 'snapshot', 'pending', 'rrddata', 'interfaces']));
    const pending = await api.nodes.$('node-c').lxc.$(101).pending.$get();
    expect(pending).toContainEqual({ key: 'hostname', value: 'omada21' });
    const missing = await raw('/api2/json/nodes/node-a/lxc/101');
    expect(missing.statusText).toBe("Configuration file 'nodes/node-a/lxc/101.conf' does not exist");
    const vm = await raw('/api2/json/nodes/node-c/qemu/101');
    expect(vm.statusText).toBe("Configuration file 'nodes/node-c/qemu-server/101.conf' does not exist");
  });

  it('DELETE snapshot runs as a task; the snapshot tree closes over it', async () => {
    const ct = api.nodes.$('node-b').lxc.$(159);
    await waitTask('node-b', await ct.snapshot.$post({ snapname: 'sa' }));
    await waitTask('node-b', await ct.snapshot.$post({ snapname: 'sb' }));
    expect(await ct.snapshot.$('sa').$get()).toEqual([{ cmd: 'rollback' }, { cmd: 'config' }]);
    const upid: string = await ct.snapshot.$('sa').$delete();
    expect(upid).toContain(':vzdelsnapshot:159:');
    expect((await waitTask('node-b', upid)).exitstatus).toBe('OK');
    const names = (await ct.snapshot.$get()).map((s: { name: string; parent?: string }) => [s.name, s.parent]);
    expect(names).toEqual([['sb', undefined], ['current', 'sb']]);
    expect((await waitTask('node-b', await ct.snapshot.$('sa').$delete())).exitstatus).toBe("snapshot 'sa' does not exist");
    expect((await raw('/api2/json/nodes/node-b/lxc/159/snapshot/sa')).statusText).toBe("snapshot 'sa' does not exist");
  });

  it('/cluster/tasks lists the tasks of every node', async () => {
    const upid: string = await api.nodes.$('node-b').lxc.$(155).status.stop.$post();
    await waitTask('node-b', upid);
    const tasks = (await api.cluster.tasks.$get()).map((t: { upid: string }) => t.upid);
    expect(tasks).toContain(upid);
    expect(tasks.some((u: string) => u.startsWith('UPID:node-c:'))).toBe(true);
  });
});

describe('/api2/extjs', () => {
  it('answers with success: 1 next to the data', async () => {
    const r = await raw('/api2/extjs/version');
    expect([r.status, r.body.success, r.body.data.release]).toEqual([200, 1, '9.0']);
  });

  it('answers errors with HTTP 200, success: 0, the status and message in the body', async () => {
    const missing = await raw('/api2/extjs/nodes/node-a/lxc/999/status/current');
    expect([missing.status, missing.body]).toEqual([200, { data: null, success: 0, status: 500, message: "Configuration file 'nodes/node-a/lxc/999.conf' does not exist\n" }]);
    const bad = await raw('/api2/extjs/cluster/nextid?vmid=abc');
    expect(bad.body).toMatchObject({ success: 0, status: 400, errors: { vmid: "type check ('integer') failed - got 'abc'" } });
    const unknown = await raw('/api2/extjs/nodes/node-a/nope', { method: 'GET' });
    expect(unknown.body).toMatchObject({ success: 0, status: 501 });
  });

  it('a missing token is still a plain 401', async () => {
    expect((await raw('/api2/extjs/version', { auth: null })).status).toBe(401);
  });
});
