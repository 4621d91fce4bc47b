// Every GET of the PVE schema subset and of the extra endpoints real clients use, called through
// the real proxmox-api client over HTTPS (trusting the simulator's self-signed CA), answers data
// that validates against the schema's `returns` — in a calm fleet and with a node down.
import { existsSync, readFileSync } from 'node:fs';
import proxmoxApi, { type ProxmoxEngineOptions } from 'proxmox-api';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../core/mod.ts';
import { buildFleet } from '../fleet/manifest.ts';
import { REFERENCE_MANIFEST } from '../fleet/reference-fleet.ts';
import { startSimulator, type SimulatorHandle } from '../fleet/sim/mod.ts';
import {
  loadPveSchema, OFFICIAL_EXTRA_SCHEMA_PATH, OFFICIAL_SCHEMA_PATH, SIM_EXTRA_SCHEMA_URL, SIM_SCHEMA_URL, schemaMethods, validatePveValue, type PveMethodDef,
} from './helpers/pve-schema.ts';

type Nav = { [k: string]: Nav } & { $(id: string | number): Nav; $get(p?: Record<string, unknown>): Promise<unknown>; $post(p?: Record<string, unknown>): Promise<unknown> };

const schema = loadPveSchema();
const gets = schemaMethods(schema, 'GET');
const extra = loadPveSchema(SIM_EXTRA_SCHEMA_URL);
// the extra schema's GETs the twin answers (the rest are write endpoints real clients need, or 501)
const extraGets = schemaMethods(extra, 'GET');

let sim: SimulatorHandle;
let dispatcher: Agent;
let api: Nav;
const values: Record<string, string | number> = { node: 'node-b', storage: 'local-lvm', poolid: 'layer2', userid: 'homeostat@pve', snapname: 'pre', sid: 'ct:155' };
/** Required query parameters, by name. */
const required: Record<string, string> = { timeframe: 'hour' };
function requiredParams(def: PveMethodDef, path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, p] of Object.entries(def.parameters?.properties ?? {})) if (!p.optional && !path.includes(`{${k}}`) && required[k]) out[k] = required[k];
  return out;
}

/** Walks proxmox-api's proxy along a schema path: literal segments as properties, {x} via $(). */
function at(template: string, vmidFor: (t: string) => number): Nav {
  let n = api;
  for (const seg of template.split('/').filter(Boolean)) {
    const m = /^\{(.+)\}$/.exec(seg);
    if (!m) n = n[seg];
    else n = n.$(m[1] === 'vmid' ? vmidFor(template) : values[m[1]]);
  }
  return n;
}
const vmidFor = (t: string) => (t.includes('/qemu/') ? 300 : 159);

function fleet() {
  const m = structuredClone(REFERENCE_MANIFEST) as { guests: Record<string, unknown>[] } & typeof REFERENCE_MANIFEST;
  m.guests.push({ vmid: 300, name: 'win-vm', node: 'node-b', type: 'qemu', layer: 4, dependsOn: [], bootMs: 2000, shutdownMs: 1000 });
  return buildFleet(m);
}

async function waitTask(upid: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const s = (await api.nodes.$('node-b').tasks.$(upid).status.$get()) as { status: string };
    if (s.status === 'stopped') return;
    await sleep(10);
  }
  throw new Error(`task ${upid} did not finish`);
}

beforeAll(async () => {
  sim = await startSimulator({ fleet: fleet(), port: 0, timeScale: 0.01 });
  dispatcher = new Agent({ connect: { ca: sim.caPem } });
  const u = new URL(sim.url);
  const fetch = ((url: string | URL, init?: object) => undiciFetch(url, { ...init, dispatcher })) as unknown as ProxmoxEngineOptions['fetch'];
  api = proxmoxApi({ host: u.hostname, port: Number(u.port), schema: 'https', tokenID: sim.tokenId, tokenSecret: sim.tokenSecret, fetch }) as unknown as Nav;
  // some history to show: a snapshot, a finished task, a qemu restart, an HA resource
  await waitTask((await api.nodes.$('node-b').lxc.$(159).snapshot.$post({ snapname: 'pre', description: 'before chaos' })) as string);
  await waitTask((await api.nodes.$('node-b').qemu.$(300).snapshot.$post({ snapname: 'pre' })) as string);
  await waitTask((await api.nodes.$('node-b').qemu.$(300).status.stop.$post()) as string);
  const upid = (await api.nodes.$('node-b').qemu.$(300).status.start.$post()) as string;
  await waitTask(upid);
  values.upid = upid;
  await api.cluster.ha.resources.$post({ sid: 'ct:155', state: 'started' });
});

afterAll(async () => {
  await sim?.stop();
  await dispatcher?.close();
});

describe('schema copy', () => {
  it.skipIf(!existsSync(OFFICIAL_SCHEMA_PATH))('is the official schema subset, unchanged', () => {
    expect(readFileSync(SIM_SCHEMA_URL, 'utf8')).toBe(readFileSync(OFFICIAL_SCHEMA_PATH, 'utf8'));
  });

  it.skipIf(!existsSync(OFFICIAL_EXTRA_SCHEMA_PATH))('is the official extra schema, unchanged', () => {
    expect(readFileSync(SIM_EXTRA_SCHEMA_URL, 'utf8')).toBe(readFileSync(OFFICIAL_EXTRA_SCHEMA_PATH, 'utf8'));
  });

  it('has GET endpoints to check', () => {
    expect(gets.length).toBeGreaterThanOrEqual(15);
  });
});

describe('every GET of the schema subset through proxmox-api', () => {
  it.each(gets.map((g) => [g.path, g.def] as const))('GET %s validates against returns', async (path, def) => {
    const data = await at(path, vmidFor).$get();
    expect(validatePveValue(def.returns, data)).toEqual([]);
  });

  it.each(extraGets.map((g) => [g.path, g.def] as const))('GET %s (extra) validates against returns', async (path, def) => {
    const data = await at(path, vmidFor).$get(requiredParams(def, path));
    expect(validatePveValue(def.returns, data)).toEqual([]);
  });

  // optional parameters change the answer's shape: check those variants too
  const variants: [string, Record<string, unknown>][] = [
    ['/cluster/resources', { type: 'vm' }],
    ['/cluster/resources', { type: 'node' }],
    ['/cluster/resources', { type: 'storage' }],
    ['/cluster/resources', { type: 'sdn' }],
    ['/nodes/{node}/tasks', { source: 'all', limit: 5, vmid: 300 }],
    ['/nodes/{node}/tasks', { errors: true }],
    ['/nodes/{node}/tasks/{upid}/log', { start: 0, limit: 1 }],
    ['/nodes/{node}/lxc/{vmid}/config', { snapshot: 'pre' }],
    ['/nodes/{node}/lxc/{vmid}/config', { current: true }],
    ['/nodes/{node}/qemu', { full: true }],
    ['/nodes/{node}/lxc/{vmid}/migrate', { target: 'node-a' }],
    ['/cluster/ha/resources', { type: 'ct' }],
    ['/pools', { poolid: 'layer2', type: 'lxc' }],
    ['/access/users', { full: true }],
    ['/access/permissions', { path: '/vms/159' }],
    ['/nodes/{node}/storage', { content: 'images' }],
    ['/nodes/{node}/network', { type: 'bridge' }],
    ['/nodes/{node}/rrddata', { timeframe: 'day', cf: 'MAX' }],
    ['/nodes/{node}/lxc/{vmid}/rrddata', { timeframe: 'week' }],
    ['/cluster/nextid', { vmid: 999 }],
  ];
  it.each(variants)('GET %s %j validates', async (path, params) => {
    const data = await at(path, vmidFor).$get(params);
    expect(validatePveValue((schema[path] ?? extra[path]).GET.returns, data)).toEqual([]);
  });

  it('with a node down, the cluster-wide views still validate and show it', async () => {
    const healer = await fetchSim('POST', '/sim/faults', { kind: 'node-down', target: 'node-a' });
    try {
      for (const path of ['/nodes', '/cluster/status', '/cluster/resources', '/cluster/ha/status/current']) {
        const data = await at(path, vmidFor).$get();
        expect(validatePveValue(schema[path].GET.returns, data), path).toEqual([]);
      }
      const status = (await api.cluster.status.$get()) as { type: string; name: string; online?: number; quorate?: number }[];
      expect(status.find((e) => e.name === 'node-a')?.online).toBe(0);
      expect(status.find((e) => e.type === 'cluster')?.quorate).toBe(1);
      const vms = (await api.cluster.resources.$get({ type: 'vm' })) as { vmid: number; status: string }[];
      expect(vms.find((v) => v.vmid === 124)?.status).toBe('unknown');
    } finally {
      await fetchSim('DELETE', `/sim/faults/${(healer as { id: string }).id}`);
    }
  });
});

async function fetchSim(method: string, path: string, body?: unknown): Promise<unknown> {
  const r = await undiciFetch(`${sim.url}${path}`, {
    method, dispatcher, body: body === undefined ? undefined : JSON.stringify(body),
    headers: { Authorization: `PVEAPIToken=${sim.tokenId}=${sim.tokenSecret}`, 'Content-Type': 'application/json' },
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return JSON.parse(text);
}
