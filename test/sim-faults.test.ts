// Every fault kind, observed through the PVE API and the guests' /sim/health, and the full
// crash → start → running → healthy cycle through the real proxmox-api client.
import proxmoxApi, { type ProxmoxEngineOptions } from 'proxmox-api';
import { fetch } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../core/mod.ts';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { startSimulator, type SimulatorHandle } from '../fleet/sim/mod.ts';

type Nav = { [k: string]: Nav } & { $(id: string | number): Nav; $get(p?: Record<string, unknown>): Promise<any>; $post(p?: Record<string, unknown>): Promise<any> };

let sim: SimulatorHandle;
let api: Nav;
let headers: Record<string, string>;
const injected: string[] = [];

async function simCall(method: string, path: string, body?: unknown): Promise<{ status: number; body: any; ms: number }> {
  const t0 = performance.now();
  const r = await fetch(new URL(path, sim.url), { method, headers, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : undefined, ms: performance.now() - t0 };
}
async function fault(kind: string, target: string | number, extra: Record<string, unknown> = {}): Promise<string> {
  const r = await simCall('POST', '/sim/faults', { kind, target: String(target), ...extra });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  injected.push(r.body.id);
  return r.body.id as string;
}
const heal = (id: string) => simCall('DELETE', `/sim/faults/${id}`);
const health = (vmid: number) => simCall('GET', `/sim/health/${vmid}`);
const ct = (node: string, vmid: number) => api.nodes.$(node).lxc.$(vmid);
/** After a start, PVE says running at once; the guest's services answer once bootMs has passed. */
async function untilServing(vmid: number): Promise<Awaited<ReturnType<typeof health>>> {
  for (let i = 0; i < 2000; i++) {
    const h = await health(vmid);
    if (h.status !== 503 || (h.body as { status?: string }).status !== 'starting') return h;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`guest ${vmid} still starting`);
}

async function waitTask(node: string, upid: string): Promise<{ exitstatus?: string }> {
  for (let i = 0; i < 2000; i++) {
    const s = await api.nodes.$(node).tasks.$(upid).status.$get();
    if (s.status === 'stopped') return s;
    await sleep(5);
  }
  throw new Error('task did not finish');
}
async function until<T>(fn: () => Promise<T | undefined | false>, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error('condition not met');
    await sleep(10);
  }
}

beforeAll(async () => {
  sim = await startSimulator({ fleet: referenceFleet(), port: 0, http: true, timeScale: 0.02 });
  headers = { Authorization: `PVEAPIToken=${sim.tokenId}=${sim.tokenSecret}`, 'Content-Type': 'application/json' };
  const u = new URL(sim.url);
  api = proxmoxApi({ host: u.hostname, port: Number(u.port), schema: 'http', tokenID: sim.tokenId, tokenSecret: sim.tokenSecret, fetch: fetch as unknown as ProxmoxEngineOptions['fetch'] }) as unknown as Nav;
});
afterEach(async () => {
  while (injected.length) await heal(injected.pop()!);
});
afterAll(() => sim?.stop());

describe('the fault API', () => {
  it('lists active faults, heals by id, auto-heals after durationMs', async () => {
    const id = await fault('unhealthy', 120);
    expect((await simCall('GET', '/sim/faults')).body).toEqual([expect.objectContaining({ id, kind: 'unhealthy', target: '120' })]);
    expect((await heal(id)).status).toBe(200);
    expect((await heal(id)).status).toBe(404);
    expect((await simCall('GET', '/sim/faults')).body).toEqual([]);
    await fault('unhealthy', 120, { durationMs: 50 });
    expect((await health(120)).status).toBe(503);
    await until(async () => (await health(120)).status === 200);
    expect((await simCall('GET', '/sim/faults')).body).toEqual([]);
  });

  it.each([
    [{ kind: 'meltdown', target: '101' }, /kind.*crash, hang/],
    [{ kind: 'crash' }, /target/],
    [{ kind: 'crash', target: '999' }, /no guest 999/],
    [{ kind: 'node-down', target: 'node-z' }, /no node 'node-z'/],
    [{ kind: 'api-slow', target: '*', params: { delayMs: -5 } }, /delayMs/],
    [{ kind: 'crash', target: '101', durationMs: -1 }, /durationMs/],
    [{ kind: 'crash', target: '101', color: 'red' }, /color|unrecognized/i],
    ['{not json', /JSON/],
  ])('refuses a bad request %j with 400 and a clear message', async (body, msg) => {
    const r = await simCall('POST', '/sim/faults', body);
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(msg);
  });

  it('shows the fleet with state, layer, bootMs, health and metrics', async () => {
    const f = (await simCall('GET', '/sim/fleet')).body;
    expect(f.nodes.map((n: { name: string }) => n.name)).toEqual(['node-a', 'node-b', 'node-c']);
    expect(f.guests).toHaveLength(12);
    expect(f.guests.find((g: { vmid: number }) => g.vmid === 243)).toMatchObject({
      name: 'ollama-server', node: 'node-a', layer: 3, bootMs: 8000, state: 'running', status: 'running', health: 'ok', healthy: true,
      certDaysLeft: expect.any(Number), metrics: expect.objectContaining({ cpu: expect.any(Number), maxmem: 1024 ** 3 }),
    });
  });

  it('?view=state gives only what a poller needs, and tracks state and health like the full view', async () => {
    const full = (await simCall('GET', '/sim/fleet')).body;
    await fault('unhealthy', 155);
    const brief = (await simCall('GET', '/sim/fleet?view=state')).body;
    expect(brief.nodes).toEqual(full.nodes.map((n: { name: string; online: boolean; fenced: boolean }) => ({ name: n.name, online: n.online, fenced: n.fenced })));
    expect(brief.guests).toHaveLength(12);
    expect(brief.guests.find((g: { vmid: number }) => g.vmid === 243)).toEqual({ vmid: 243, node: 'node-a', status: 'running', healthy: true });
    expect(brief.guests.find((g: { vmid: number }) => g.vmid === 155)).toEqual({ vmid: 155, node: 'node-b', status: 'running', healthy: false });
    const bad = await simCall('GET', '/sim/fleet?view=everything');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatch(/view: expected state or full/);
  });

  it('GET /sim/health?vmids= answers for many guests at once, each as /sim/health/{vmid} would', async () => {
    await fault('unhealthy', 155);
    const r = await simCall('GET', '/sim/health?vmids=243,155,99999');
    expect(r.status).toBe(200);
    expect(r.body.guests).toEqual([
      { vmid: 243, status: 'ok' },
      { vmid: 155, status: 'unhealthy', reason: (await health(155)).body.reason },
      { vmid: 99999, status: 'unknown', reason: 'no guest 99999' },
    ]);
    for (const bad of ['', '?vmids=', '?vmids=1,x', `?vmids=${Array.from({ length: 501 }, (_, i) => i + 1).join(',')}`]) {
      const b = await simCall('GET', `/sim/health${bad}`);
      expect(b.status).toBe(400);
      expect(b.body.error).toMatch(/vmids: expected 1 to 500/);
    }
  });
});

describe('guest faults', () => {
  it('crash: the guest stops; start through proxmox-api brings it back running and healthy', async () => {
    await fault('crash', 155);
    expect((await ct('node-b', 155).status.current.$get()).status).toBe('stopped');
    expect((await health(155)).body).toMatchObject({ status: 'unhealthy', reason: 'guest is stopped' });
    const upid: string = await ct('node-b', 155).status.start.$post();
    expect((await waitTask('node-b', upid)).exitstatus).toBe('OK');
    expect((await ct('node-b', 155).status.current.$get()).status).toBe('running');
    expect((await untilServing(155)).body).toMatchObject({ status: 'ok', vmid: 155 });
  });

  it('crash during a boot fails the start task', async () => {
    const slow = await startSimulator({ fleet: referenceFleet(), port: 0, http: true, timeScale: 1, initial: 'stopped' });
    try {
      const u = new URL(slow.url);
      const api1 = proxmoxApi({ host: u.hostname, port: Number(u.port), schema: 'http', tokenID: slow.tokenId, tokenSecret: slow.tokenSecret, fetch: fetch as unknown as ProxmoxEngineOptions['fetch'] }) as unknown as Nav;
      const upid: string = await api1.nodes.$('node-a').lxc.$(243).status.start.$post();
      slow.state.faults.inject({ kind: 'crash', target: '243' });
      const s = await api1.nodes.$('node-a').tasks.$(upid).status.$get();
      expect(s).toMatchObject({ status: 'stopped', exitstatus: "startup for container '243' failed" });
    } finally {
      await slow.stop();
    }
  });

  it('hang: PVE says running, health fails, a shutdown times out; a reboot clears it', async () => {
    await fault('hang', 122);
    expect((await ct('node-c', 122).status.current.$get()).status).toBe('running');
    expect((await health(122)).body).toMatchObject({ status: 'unhealthy', reason: expect.stringMatching(/hung/) });
    const sd = await waitTask('node-c', await ct('node-c', 122).status.shutdown.$post({ timeout: 1 }));
    expect(sd.exitstatus).toBe('container did not stop');
    expect((await waitTask('node-c', await ct('node-c', 122).status.reboot.$post())).exitstatus).toBe('OK');
    expect((await untilServing(122)).status).toBe(200);
  });

  it('hang: a stop and start clears it too', async () => {
    await fault('hang', 102);
    await waitTask('node-c', await ct('node-c', 102).status.stop.$post());
    await waitTask('node-c', await ct('node-c', 102).status.start.$post());
    expect((await untilServing(102)).status).toBe(200);
  });

  it('unhealthy: health fails while the fault lasts, restarts do not help, healing does', async () => {
    const id = await fault('unhealthy', 104);
    expect((await health(104)).status).toBe(503);
    await waitTask('node-b', await ct('node-b', 104).status.reboot.$post());
    expect((await untilServing(104)).body).toMatchObject({ status: 'unhealthy', reason: 'health check failed: service unhealthy' });
    await heal(id);
    expect((await health(104)).status).toBe(200);
  });

  it('disk-fill, cpu-spike, mem-spike show in status/current and cluster/resources', async () => {
    await fault('disk-fill', 159);
    await fault('cpu-spike', 159);
    await fault('mem-spike', 159);
    const g = await ct('node-b', 159).status.current.$get();
    expect(g.disk / g.maxdisk).toBeGreaterThan(0.95);
    expect(g.cpu).toBeGreaterThan(0.9);
    expect(g.mem / g.maxmem).toBeGreaterThan(0.9);
    const [r] = (await api.cluster.resources.$get({ type: 'vm' })).filter((x: { vmid: number }) => x.vmid === 159);
    expect(r.disk / r.maxdisk).toBeGreaterThan(0.95);
    while (injected.length) await heal(injected.pop()!);
    const after = await ct('node-b', 159).status.current.$get();
    expect(after.disk / after.maxdisk).toBeLessThan(0.9);
    expect(after.cpu).toBeLessThan(0.9);
  });

  it('cert-expiring: certDaysLeft drops to 5 in /sim/health and /sim/fleet', async () => {
    const before = (await health(200)).body.certDaysLeft;
    expect(before).toBeGreaterThan(14);
    const id = await fault('cert-expiring', 200);
    expect((await health(200)).body).toMatchObject({ status: 'ok', certDaysLeft: 5 });
    expect((await simCall('GET', '/sim/fleet')).body.guests.find((g: { vmid: number }) => g.vmid === 200).certDaysLeft).toBe(5);
    await heal(id);
    expect((await health(200)).body.certDaysLeft).toBe(before);
  });
});

describe('node and API faults', () => {
  it('node-down: 595 for its paths, offline in the cluster, its guests unreachable; fence, migrate away, heal — one copy', async () => {
    const id = await fault('node-down', 'node-a');
    await expect(ct('node-a', 243).status.current.$get()).rejects.toThrow(/595/);
    const h = await health(243);
    expect([h.status, h.body.reason]).toEqual([503, expect.stringMatching(/node node-a is down/)]);
    const status: { name: string; online?: number; quorate?: number; type: string }[] = await api.cluster.status.$get();
    expect(status.find((e) => e.name === 'node-a')?.online).toBe(0);
    expect(status.find((e) => e.type === 'cluster')?.quorate).toBe(1);
    // migrating off a dead node needs it fenced first
    await expect(ct('node-a', 243).migrate.$post({ target: 'node-b' })).rejects.toThrow(/595/);
    expect((await simCall('POST', '/sim/fence/node-b')).status).toBe(409);
    expect((await simCall('POST', '/sim/fence/node-a')).body).toEqual({ node: 'node-a', fenced: true });
    const upid: string = await ct('node-a', 243).migrate.$post({ target: 'node-b' });
    expect((await waitTask('node-a', upid)).exitstatus).toBe('OK');
    expect((await ct('node-b', 243).status.current.$get()).status).toBe('stopped');
    await heal(id);
    injected.length = 0;
    const onA: { vmid: number }[] = await api.nodes.$('node-a').lxc.$get();
    expect(onA.map((g) => g.vmid).sort()).toEqual([124, 289]);
    expect(onA.every((g) => (g as unknown as { status: string }).status === 'stopped')).toBe(true);
    const all: { vmid: number }[] = await api.cluster.resources.$get({ type: 'vm' });
    expect(all.filter((g) => g.vmid === 243)).toHaveLength(1);
    expect((await simCall('GET', '/sim/fleet')).body.nodes.find((n: { name: string }) => n.name === 'node-a')).toMatchObject({ online: true, fenced: false });
  });

  it('api-error on a node: its paths answer 500, other nodes are fine; on * every PVE path does', async () => {
    await fault('api-error', 'node-b');
    await expect(api.nodes.$('node-b').lxc.$get()).rejects.toThrow(/500/);
    expect(await api.nodes.$('node-c').lxc.$get()).toBeInstanceOf(Array);
    await fault('api-error', '*');
    await expect(api.version.$get()).rejects.toThrow(/500/);
    expect((await simCall('GET', '/sim/fleet')).status).toBe(200);
    while (injected.length) await heal(injected.pop()!);
    expect((await api.version.$get()).release).toBe('9.0');
  });

  it('api-slow adds params.delayMs to PVE answers (not to /sim)', async () => {
    await fault('api-slow', '*', { params: { delayMs: 150 } });
    expect((await simCall('GET', '/api2/json/version')).ms).toBeGreaterThanOrEqual(140);
    const list = (await simCall('GET', '/sim/faults')).body;
    expect(list[0]).toMatchObject({ kind: 'api-slow', params: { delayMs: 150 } });
  });
});
