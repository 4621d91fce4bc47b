// The adapter end to end against the PVE-API simulator, over HTTPS (its self-signed CA) and HTTP,
// with faults injected through /sim/faults. No assertion here depends on wall-clock speed.
import { Agent, fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isHomeostatError, type HomeostatError, sleep } from '../core/mod.ts';
import { createPveClient, upidNode, type ProxmoxClient, type PveClientOptions, type PveRequestEvent } from '../fleet/pve-client.ts';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { startSimulator } from '../fleet/sim/mod.ts';

type Sim = Awaited<ReturnType<typeof startSimulator>>;
const WRONG_SECRET = '00000000-0000-4000-8000-000000000000';
const twingate = { node: 'node-c', vmid: 102, type: 'lxc' as const };

async function failure(p: Promise<unknown>): Promise<HomeostatError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  if (!isHomeostatError(e)) throw new Error(`expected a HomeostatError, got ${String(e)}`);
  return e;
}

/** The simulator's fault API, outside the PVE namespace, with the same token. */
function faults(sim: Sim) {
  const dispatcher = new Agent({ connect: sim.caPem ? { ca: sim.caPem } : {} });
  const headers = { Authorization: `PVEAPIToken=${sim.tokenId}=${sim.tokenSecret}`, 'Content-Type': 'application/json' };
  return {
    async inject(f: { kind: string; target: string; durationMs?: number; params?: Record<string, unknown> }): Promise<string> {
      const res = await fetch(`${sim.url}/sim/faults`, { method: 'POST', headers, body: JSON.stringify(f), dispatcher });
      const body = (await res.json()) as { id?: string; data?: { id: string } };
      if (res.status >= 300) throw new Error(`inject ${f.kind}: ${res.status} ${JSON.stringify(body)}`);
      return body.id ?? body.data!.id;
    },
    async heal(id: string): Promise<void> {
      const res = await fetch(`${sim.url}/sim/faults/${id}`, { method: 'DELETE', headers, dispatcher });
      await res.arrayBuffer();
    },
    close: () => dispatcher.close(),
  };
}

function clientFor(sim: Sim, extra: Partial<PveClientOptions> = {}) {
  const events: PveRequestEvent[] = [];
  const c = createPveClient({ url: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret, caPem: sim.caPem, retryBaseMs: 20, retryMaxMs: 200, onRequest: (e) => events.push(e), ...extra });
  return { c, events };
}

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await sleep(50);
  }
}

for (const transport of ['https', 'http'] as const) {
  describe(`PVE adapter against the simulator over ${transport}`, () => {
    let sim: Sim;
    let pve: ProxmoxClient;
    let f: ReturnType<typeof faults>;

    beforeAll(async () => {
      sim = await startSimulator({ fleet: referenceFleet(), port: 0, http: transport === 'http', timeScale: 0.1 });
      pve = clientFor(sim).c;
      f = faults(sim);
    });
    afterAll(async () => {
      await pve?.close();
      await f?.close();
      await sim?.stop();
    });

    it('lists nodes, guests per node (only the types asked) and the cluster', async () => {
      const nodes = await pve.listNodes();
      expect(nodes.map((n) => n.node).sort()).toEqual(['node-a', 'node-b', 'node-c']);
      expect(nodes.every((n) => n.status === 'online')).toBe(true);

      const { c, events } = clientFor(sim);
      const onB = await c.listGuests('node-b', ['lxc']);
      expect(onB.map((g) => g.vmid).sort()).toEqual([100, 104, 120, 155, 159]);
      expect(onB.every((g) => g.node === 'node-b' && g.type === 'lxc' && typeof g.status === 'string')).toBe(true);
      expect(events.map((e) => e.path)).toEqual(['/nodes/node-b/lxc']);
      expect(await c.listGuests('node-b', ['qemu'])).toEqual([]);
      await c.close();

      const all = await pve.clusterGuests();
      expect(all).toHaveLength(12);
      expect(all.find((g) => g.vmid === 200)).toMatchObject({ node: 'node-c', type: 'lxc', name: 'homeassistant' });
      const status = await pve.clusterStatus();
      expect(status.filter((e) => e.type === 'node').map((e) => e.name).sort()).toEqual(['node-a', 'node-b', 'node-c']);
      expect(await pve.version()).toMatchObject({ version: expect.any(String), release: expect.any(String) });
    });

    it('drives a crash → start → waitForTask → running cycle', async () => {
      await until(() => pve.guestStatus(twingate), (g) => g.status === 'running');
      const id = await f.inject({ kind: 'crash', target: String(twingate.vmid) });
      expect((await until(() => pve.guestStatus(twingate), (g) => g.status === 'stopped')).status).toBe('stopped');
      await f.heal(id);

      const upid = await pve.start(twingate);
      expect(upidNode(upid)).toBe('node-c');
      const done = await pve.waitForTask(upidNode(upid), upid, { timeoutMs: 20_000 });
      expect(done).toMatchObject({ upid, status: 'stopped', exitstatus: 'OK' });
      expect((await pve.guestStatus(twingate)).status).toBe('running');
      expect((await pve.taskLog('node-c', upid)).length).toBeGreaterThan(0);
    });

    it('reports a task that ends in error as PVE_TASK_FAILED with its exit status and log', async () => {
      const nvr = { node: 'node-b', vmid: 104, type: 'lxc' as const };
      // a hung guest ignores a graceful shutdown: the task runs, then fails on its timeout
      const id = await f.inject({ kind: 'hang', target: String(nvr.vmid) });
      const upid = await pve.shutdown(nvr, { timeoutSec: 1 });
      const e = await failure(pve.waitForTask('node-b', upid, { timeoutMs: 20_000 }));
      expect(e.code).toBe('HOMEOSTAT_ERR_PVE_TASK_FAILED');
      expect(e.message).toMatch(/^task \S+ 104 on node-b failed: .*; last log: .*TASK ERROR/);
      expect(e.message).not.toContain('\n');
      await f.heal(id);
      const g = await pve.guestStatus(nvr);
      if (g.status !== 'running') await pve.waitForTask('node-b', await pve.start(nvr), { timeoutMs: 20_000 });
    });

    it('a refusal in the current state (start a running guest) is PVE_REFUSED, asked once', async () => {
      const omada = { node: 'node-c', vmid: 101, type: 'lxc' as const };
      await until(() => pve.guestStatus(omada), (g) => g.status === 'running');
      const e = await failure(pve.start(omada));
      expect(e.code).toBe('HOMEOSTAT_ERR_PVE_REFUSED');
      expect(e.message).toMatch(/already running/);
      expect(e.message).not.toMatch(/attempts/);
    });

    it('waitForTask times out with PVE_TIMEOUT and honours an abort', async () => {
      const ollama = { node: 'node-a', vmid: 243, type: 'lxc' as const };
      await until(() => pve.guestStatus(ollama), (g) => g.status === 'running');
      const upid = await pve.reboot(ollama);
      const e = await failure(pve.waitForTask('node-a', upid, { timeoutMs: 1, pollMs: 10 }));
      expect(e.code).toBe('HOMEOSTAT_ERR_PVE_TIMEOUT');
      expect(e.message).toContain(upid);

      const ctl = new AbortController();
      const waiting = pve.waitForTask('node-a', upid, { signal: ctl.signal, pollMs: 10 });
      ctl.abort(new Error('cancelled by test'));
      await expect(waiting).rejects.toThrow('cancelled by test');
      await pve.waitForTask('node-a', upid, { timeoutMs: 20_000 });
    });

    it('maps a wrong secret to PVE_AUTH, with a single request', async () => {
      const { c, events } = clientFor(sim, { tokenSecret: WRONG_SECRET });
      const e = await failure(c.listNodes());
      expect(e.code).toBe('HOMEOSTAT_ERR_PVE_AUTH');
      expect(e.message).toMatch(/^GET \/nodes: PVE refused the token: 401/);
      expect(events).toHaveLength(1);
      await c.close();
    });

    it('maps invalid parameters to PVE_BAD_REQUEST naming the parameter', async () => {
      const e = await failure(pve.reboot(twingate, { timeoutSec: -1 }));
      expect(e.code).toBe('HOMEOSTAT_ERR_PVE_BAD_REQUEST');
      expect(e.message).toMatch(/^POST \/nodes\/node-c\/lxc\/102\/status\/reboot: PVE rejected the parameters: 400 .*"timeout"/);
    });

    it('maps a missing guest to PVE_NOT_FOUND', async () => {
      const e = await failure(pve.guestStatus({ node: 'node-a', vmid: 99_999, type: 'lxc' }));
      expect(e.code).toBe('HOMEOSTAT_ERR_PVE_NOT_FOUND');
    });

    it('retries through a short api-error and gives up on a lasting one', async () => {
      const { c, events } = clientFor(sim, { retries: 10, retryBaseMs: 100, retryMaxMs: 400 });
      await f.inject({ kind: 'api-error', target: '*', durationMs: 300 });
      expect((await c.listNodes()).length).toBe(3);
      expect(events[0].status).toBe(500);
      expect(events.at(-1)?.status).toBe(200);
      await c.close();

      const lasting = await f.inject({ kind: 'api-error', target: '*' });
      try {
        const { c: c2, events: ev2 } = clientFor(sim, { retries: 2 });
        const e = await failure(c2.listNodes());
        expect(e.code).toBe('HOMEOSTAT_ERR_PVE_UNAVAILABLE');
        expect(e.message).toMatch(/^GET \/nodes: PVE answered 500 .*\(after 3 attempts\)$/);
        expect(e.message).not.toContain('\n');
        expect(ev2).toHaveLength(3);
        await c2.close();
      } finally {
        await f.heal(lasting);
      }
    });

    it("maps a downed node's calls to PVE_UNAVAILABLE while the other nodes answer", async () => {
      const id = await f.inject({ kind: 'node-down', target: 'node-a' });
      try {
        const { c } = clientFor(sim, { retries: 1 });
        const e = await failure(c.listGuests('node-a'));
        expect(e.code).toBe('HOMEOSTAT_ERR_PVE_UNAVAILABLE');
        expect(e.message).toMatch(/^GET \/nodes\/node-a\/(lxc|qemu): PVE answered 595 .*\(after 2 attempts\)$/);
        expect((await c.listGuests('node-b')).length).toBe(5);
        expect((await failure(c.listGuests('node-x'))).code).toBe('HOMEOSTAT_ERR_PVE_NOT_FOUND');
        await c.close();
      } finally {
        await f.heal(id);
      }
    });

    it('maps api-slow beyond the call timeout to PVE_TIMEOUT', async () => {
      const id = await f.inject({ kind: 'api-slow', target: '*', params: { delayMs: 2000 } });
      try {
        const { c } = clientFor(sim, { timeoutMs: 100, retries: 1 });
        const e = await failure(c.version());
        expect(e.code).toBe('HOMEOSTAT_ERR_PVE_TIMEOUT');
        expect(e.message).toMatch(/^GET \/version: no answer from .* within 200 ms \(after 2 attempts\)$/); // 100 ms, then twice that
        await c.close();
      } finally {
        await f.heal(id);
      }
    });
  });
}

describe('TLS to the simulator', () => {
  let sim: Sim;
  beforeAll(async () => {
    sim = await startSimulator({ fleet: referenceFleet(), port: 0 });
  });
  afterAll(() => sim?.stop());

  it('trusts the given CA, refuses an unknown one with PVE_TLS, and skips checks only when asked', async () => {
    expect(sim.url.startsWith('https://')).toBe(true);
    expect(sim.caPem).toContain('BEGIN CERTIFICATE');

    const trusted = clientFor(sim).c;
    expect((await trusted.listNodes()).length).toBe(3);
    await trusted.close();

    const { c: untrusted, events } = clientFor(sim, { caPem: undefined });
    const e = await failure(untrusted.listNodes());
    expect(e.code).toBe('HOMEOSTAT_ERR_PVE_TLS');
    expect(e.message).toMatch(/^GET \/nodes: TLS with .* failed: /);
    expect(events).toHaveLength(1);
    await untrusted.close();

    const warnings: string[] = [];
    const log = { info() {}, debug() {}, error() {}, warn: (_o: object | string, msg?: string) => void warnings.push(msg ?? ''), child: () => log };
    const insecure = clientFor(sim, { caPem: undefined, insecure: true, log }).c;
    expect((await insecure.listNodes()).length).toBe(3);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/NOT verified/);
    await insecure.close();
  });
});
