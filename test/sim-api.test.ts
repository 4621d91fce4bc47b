// The simulator answers like PVE at the HTTP level: token auth and its 401s, parameter
// verification (400 with per-parameter errors), 501 for what PVE does not implement, the JSON
// content type, unknown nodes and guests, a downed node's 595, form and JSON bodies.
import proxmoxApi, { type ProxmoxEngineOptions } from 'proxmox-api';
import { fetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { startSimulator, type SimulatorHandle } from '../fleet/sim/mod.ts';

let sim: SimulatorHandle;
let auth: string;

interface Answer {
  status: number;
  statusText: string;
  contentType: string | null;
  body: { data?: unknown; errors?: Record<string, string>; message?: string; [k: string]: unknown };
}

async function call(method: string, path: string, opts: { query?: Record<string, string>; form?: Record<string, string>; json?: unknown; auth?: string | null } = {}): Promise<Answer> {
  const url = new URL(path, sim.url);
  for (const [k, v] of Object.entries(opts.query ?? {})) url.searchParams.set(k, v);
  const headers: Record<string, string> = {};
  const a = opts.auth === undefined ? auth : opts.auth;
  if (a !== null) headers.Authorization = a;
  let body: string | undefined;
  if (opts.form) {
    body = new URLSearchParams(opts.form).toString();
    headers['Content-Type'] = 'application/x-www-form-urlencoded';
  } else if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    headers['Content-Type'] = 'application/json';
  }
  const r = await fetch(url, { method, headers, body });
  const text = await r.text();
  return { status: r.status, statusText: r.statusText, contentType: r.headers.get('content-type'), body: text ? JSON.parse(text) : {} };
}

beforeAll(async () => {
  sim = await startSimulator({ fleet: referenceFleet(), port: 0, http: true, timeScale: 0.02 });
  auth = `PVEAPIToken=${sim.tokenId}=${sim.tokenSecret}`;
});
afterAll(() => sim?.stop());

describe('authentication', () => {
  it('refuses a request without a token: 401 No ticket, {"data":null}', async () => {
    const r = await call('GET', '/api2/json/version', { auth: null });
    expect([r.status, r.statusText, r.body]).toEqual([401, 'No ticket', { data: null }]);
  });

  it('refuses a wrong secret, a malformed header, an unknown token', async () => {
    const wrong = await call('GET', '/api2/json/nodes', { auth: `PVEAPIToken=${sim.tokenId}=00000000-0000-0000-0000-000000000000` });
    expect([wrong.status, wrong.statusText]).toEqual([401, 'invalid token value!']);
    for (const bad of ['Bearer abc', `PVEAPIToken=${sim.tokenId}`, 'PVEAPIToken=not-a-token=secret']) {
      expect((await call('GET', '/api2/json/nodes', { auth: bad })).status, bad).toBe(401);
    }
    const other = await call('GET', '/api2/json/nodes', { auth: `PVEAPIToken=homeostat@pve!other=${sim.tokenSecret}` });
    expect([other.status, other.statusText]).toEqual([401, "no such token 'other' for user 'homeostat@pve'"]);
  });

  it('wants the token on /sim too, and accepts the space form of the header', async () => {
    expect((await call('GET', '/sim/fleet', { auth: null })).status).toBe(401);
    expect((await call('GET', '/api2/json/version', { auth: `PVEAPIToken ${sim.tokenId}=${sim.tokenSecret}` })).status).toBe(200);
  });

  it('makes proxmox-api throw on 401 like real PVE', async () => {
    const u = new URL(sim.url);
    const api = proxmoxApi({ host: u.hostname, port: Number(u.port), schema: 'http', tokenID: sim.tokenId, tokenSecret: '00000000-0000-0000-0000-000000000000', fetch: fetch as unknown as ProxmoxEngineOptions['fetch'] });
    await expect(api.version.$get()).rejects.toThrow(/401 invalid token value!/);
  });

  it('answers /access/ticket without a token: GET null, a password login 401', async () => {
    expect((await call('GET', '/api2/json/access/ticket', { auth: null })).body).toEqual({ data: null });
    const r = await call('POST', '/api2/json/access/ticket', { auth: null, form: { username: 'root@pam', password: 'x' } });
    expect([r.status, r.statusText]).toEqual([401, 'authentication failure']);
  });
});

describe('envelope and content type', () => {
  it('wraps data in {"data": …} with PVE\'s exact content type', async () => {
    const r = await call('GET', '/api2/json/version');
    expect(r.status).toBe(200);
    expect(r.contentType).toBe('application/json;charset=UTF-8');
    expect(r.body.data).toMatchObject({ release: '9.0', version: expect.stringMatching(/^9\.0\.\d+$/) });
  });

  it('answers 501 for unknown paths and methods, with PVE\'s message', async () => {
    const r = await call('GET', '/api2/json/foo/bar');
    expect([r.status, r.statusText, r.body.data]).toEqual([501, "Method 'GET /foo/bar' not implemented", null]);
    const d = await call('DELETE', '/api2/json/version');
    expect([d.status, d.statusText]).toEqual([501, "Method 'DELETE /version' not implemented"]);
    expect((await call('POST', '/api2/json/nodes/node-a/lxc/124/status/current')).status).toBe(501);
  });
});

describe('parameter verification', () => {
  it('bad type, bad enum, unknown parameter: 400 with one error per parameter', async () => {
    const r = await call('GET', '/api2/json/cluster/resources', { query: { type: 'vms', foo: '1' } });
    expect([r.status, r.statusText]).toEqual([400, 'Parameter verification failed.']);
    expect(r.body.data).toBeNull();
    expect(r.body.errors).toEqual({
      type: "value 'vms' does not have a value in the enumeration 'vm, storage, node, sdn'",
      foo: 'property is not defined in schema and the schema does not allow additional properties',
    });
    const t = await call('GET', '/api2/json/nodes/node-a/tasks', { query: { limit: 'ten', errors: 'yes' } });
    expect(t.body.errors).toEqual({ limit: "type check ('integer') failed - got 'ten'", errors: "type check ('boolean') failed - got 'yes'" });
    const v = await call('GET', '/api2/json/nodes/node-a/lxc/abc/status/current');
    expect(v.body.errors).toEqual({ vmid: "type check ('integer') failed - got 'abc'" });
    const low = await call('GET', '/api2/json/nodes/node-a/lxc/12/status/current');
    expect(low.body.errors).toEqual({ vmid: 'value must have a minimum value of 100' });
  });

  it('missing required parameter: "property is missing and it is not optional"', async () => {
    const r = await call('POST', '/api2/json/nodes/node-a/lxc/124/migrate', { form: {} });
    expect(r.status).toBe(400);
    expect(r.body.errors).toEqual({ target: 'property is missing and it is not optional' });
    const snap = await call('POST', '/api2/json/nodes/node-a/lxc/124/snapshot', { json: { snapname: 'bad name!' } });
    expect(snap.body.errors?.snapname).toMatch(/invalid format/);
  });

  it('accepts form bodies, JSON bodies with real booleans, and 0/1 for booleans', async () => {
    const form = await call('POST', '/api2/json/nodes/node-a/lxc/124/status/shutdown', { form: { timeout: '30', forceStop: '1' } });
    expect(form.status).toBe(200);
    expect(form.body.data).toMatch(/^UPID:node-a:.*:vzshutdown:124:homeostat@pve!sim:$/);
    const json = await call('POST', '/api2/json/nodes/node-b/lxc/155/status/shutdown', { json: { timeout: 30, forceStop: true } });
    expect(json.status).toBe(200);
    const bad = await call('POST', '/api2/json/nodes/node-b/lxc/159/status/shutdown', { json: { timeout: 'soon' } });
    expect(bad.body.errors).toEqual({ timeout: "type check ('integer') failed - got 'soon'" });
  });
});

describe('nodes and guests that do not exist or are down', () => {
  it('unknown node: 500 hostname lookup failed', async () => {
    const r = await call('GET', '/api2/json/nodes/nope/lxc');
    expect(r.status).toBe(500);
    expect(r.statusText).toMatch(/^hostname lookup 'nope' failed/);
  });

  it('unknown vmid, or a guest on another node / of another type: 500 Configuration file … does not exist', async () => {
    const r = await call('GET', '/api2/json/nodes/node-a/lxc/999/status/current');
    expect([r.status, r.statusText]).toEqual([500, "Configuration file 'nodes/node-a/lxc/999.conf' does not exist"]);
    expect((await call('GET', '/api2/json/nodes/node-a/lxc/101/status/current')).statusText).toBe("Configuration file 'nodes/node-a/lxc/101.conf' does not exist");
    expect((await call('GET', '/api2/json/nodes/node-c/qemu/101/status/current')).statusText).toBe("Configuration file 'nodes/node-c/qemu-server/101.conf' does not exist");
  });

  it('a downed node answers 595 No route to host, quickly, while the cluster views keep working', async () => {
    const f = await call('POST', '/sim/faults', { json: { kind: 'node-down', target: 'node-c' } });
    try {
      for (const p of ['/api2/json/nodes/node-c/lxc', '/api2/json/nodes/node-c/status', '/api2/json/nodes/node-c/lxc/101/status/current']) {
        const r = await call('GET', p);
        expect([r.status, r.statusText], p).toEqual([595, 'No route to host']);
      }
      const nodes = (await call('GET', '/api2/json/nodes')).body.data as { node: string; status: string }[];
      expect(nodes.find((n) => n.node === 'node-c')?.status).toBe('offline');
      expect((await call('GET', '/api2/json/cluster/status')).status).toBe(200);
    } finally {
      await call('DELETE', `/sim/faults/${f.body.id as string}`);
    }
    expect((await call('GET', '/api2/json/nodes/node-c/lxc')).status).toBe(200);
  });
});
