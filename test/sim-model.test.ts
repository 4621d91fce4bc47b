// The simulator's model: metrics move plausibly and deterministically per seed, faults overlay
// them, and the API can create and reconfigure containers like PVE.
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../core/mod.ts';
import { generateFleet, referenceFleet } from '../fleet/reference-fleet.ts';
import { startSimulator, type SimulatorHandle } from '../fleet/sim/mod.ts';

describe('metrics', () => {
  let a: SimulatorHandle;
  let b: SimulatorHandle;
  beforeAll(async () => {
    [a, b] = await Promise.all([1, 1].map((seed) => startSimulator({ fleet: generateFleet({ guests: 200, layers: 4 }), port: 0, http: true, seed, metricsIntervalMs: 0 })));
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
  });

  it('walk within bounds, counters only grow, the same seed gives the same walk', () => {
    const ga = a.state.model.guests.get(1000)!;
    const before = { netin: ga.netin, diskwrite: ga.diskwrite };
    const cpus = new Set<number>();
    for (let i = 0; i < 50; i++) {
      a.state.model.tick(1);
      b.state.model.tick(1);
      cpus.add(ga.cpu);
      for (const g of a.state.model.guests.values()) {
        const u = a.state.model.usage(g);
        expect(u.cpu).toBeGreaterThanOrEqual(0);
        expect(u.cpu).toBeLessThanOrEqual(1);
        expect(u.mem).toBeLessThanOrEqual(g.config.memory * 1024 * 1024);
        expect(u.disk).toBeLessThanOrEqual(g.maxdisk);
      }
    }
    expect(cpus.size).toBeGreaterThan(10);
    expect(ga.netin).toBeGreaterThan(before.netin);
    expect(ga.diskwrite).toBeGreaterThan(before.diskwrite);
    expect(b.state.model.guests.get(1000)!.cpu).toBe(ga.cpu);
    for (const n of a.state.model.nodes.values()) expect(n.cpu).toBeLessThanOrEqual(1);
  });

  it('a stopped guest uses no cpu or memory', () => {
    const g = a.state.model.guests.get(1001)!;
    a.state.ops.crash(g);
    a.state.model.tick(1);
    expect(a.state.model.usage(g)).toMatchObject({ cpu: 0, mem: 0 });
    expect(a.state.model.uptimeSec(g)).toBe(0);
  });
});

describe('create and reconfigure through the API', () => {
  let sim: SimulatorHandle;
  let auth: Record<string, string>;
  const call = async (method: string, path: string, form?: Record<string, string>) => {
    const r = await fetch(new URL(`/api2/json${path}`, sim.url), {
      method, body: form && new URLSearchParams(form).toString(),
      headers: { ...auth, ...(form ? { 'Content-Type': 'application/x-www-form-urlencoded' } : {}) },
    });
    return { status: r.status, statusText: r.statusText, body: (await r.json()) as { data: any } };
  };
  const waitTask = async (node: string, upid: string) => {
    for (;;) {
      const s = (await call('GET', `/nodes/${node}/tasks/${encodeURIComponent(upid)}/status`)).body.data;
      if (s.status === 'stopped') return s;
      await sleep(5);
    }
  };
  beforeAll(async () => {
    sim = await startSimulator({ fleet: referenceFleet(), port: 0, http: true, timeScale: 0.01 });
    auth = { Authorization: `PVEAPIToken=${sim.tokenId}=${sim.tokenSecret}` };
  });
  afterAll(() => sim?.stop());

  it('creates a CT as a vzcreate task, refuses a taken vmid', async () => {
    const r = await call('POST', '/nodes/node-a/lxc', { vmid: '900', ostemplate: 'local:vztmpl/debian-13-standard_13.1-1_amd64.tar.zst', hostname: 'scratch', memory: '256', start: '1' });
    expect(r.body.data).toMatch(/:vzcreate:900:/);
    expect((await waitTask('node-a', r.body.data)).exitstatus).toBe('OK');
    expect((await call('GET', '/nodes/node-a/lxc/900/status/current')).body.data).toMatchObject({ name: 'scratch', status: 'running', maxmem: 256 * 1024 ** 2 });
    const dup = await call('POST', '/nodes/node-b/lxc', { vmid: '101', ostemplate: 'local:vztmpl/x.tar.zst' });
    expect([dup.status, dup.statusText]).toEqual([500, "CT 101 already exists on node 'node-c'"]);
  });

  it('PUT config changes the config, checks the digest, refuses to delete required options', async () => {
    const cfg = (await call('GET', '/nodes/node-c/lxc/101/config')).body.data;
    expect(cfg).toMatchObject({ hostname: 'omada21', memory: 1024, digest: expect.stringMatching(/^[0-9a-f]{40}$/) });
    expect((await call('PUT', '/nodes/node-c/lxc/101/config', { memory: '2048', digest: cfg.digest })).status).toBe(200);
    expect((await call('GET', '/nodes/node-c/lxc/101/config')).body.data.memory).toBe(2048);
    const stale = await call('PUT', '/nodes/node-c/lxc/101/config', { memory: '512', digest: cfg.digest });
    expect(stale.statusText).toMatch(/detected modified configuration/);
    expect((await call('PUT', '/nodes/node-c/lxc/101/config', { delete: 'memory' })).status).toBe(400);
  });
});
