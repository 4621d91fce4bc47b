// Sensing's health probes against a real HTTP server: what each kind of answer (or silence)
// becomes, bodies cut at 16 KB, results kept apart per guest across many concurrent probes, and an
// unchanged answer kept as the same object from round to round (no new garbage per guest).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../core/mod.ts';
import { Prober } from '../agents/sensing/probe.ts';
import { buildFleet, type Fleet } from '../fleet/manifest.ts';
import type { SensingOptions } from '../agents/sensing/options.ts';

let server: Server;
let base = '';
const held: { end(): void }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    const [, kind, arg] = (req.url ?? '').split('/');
    if (kind === 'ok') return res.end(JSON.stringify({ status: 'ok', certDaysLeft: Number(arg) }));
    if (kind === 'plain') return res.end('fine');
    if (kind === 'down') {
      res.statusCode = 503;
      return res.end('service\n\n  unavailable');
    }
    if (kind === 'silent') return void held.push(res); // never answers
    if (kind === 'stall') {
      // headers, a little body, then nothing
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('partial');
      return void held.push(res);
    }
    if (kind === 'huge') {
      // 503 and a body that never ends: only the 16 KB cut ends the probe
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.write('x'.repeat(40 * 1024));
      return void held.push(res);
    }
    if (kind === 'vm') {
      // each guest answers its own status: results must land on the right guest
      const vmid = Number(arg);
      res.statusCode = vmid % 3 === 0 ? 500 : 200;
      return res.end(`vm ${vmid}`);
    }
    res.statusCode = 404;
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const r of held) r.end();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

function fleetWith(health: Record<number, string>): Fleet {
  const vmids = Object.keys(health).map(Number);
  return buildFleet({
    name: 'probe-test',
    nodes: [{ name: 'node-a', capacity: vmids.length }],
    guests: vmids.map((vmid) => ({ vmid, name: `g-${vmid}`, node: 'node-a', type: 'lxc', layer: 1, dependsOn: [], bootMs: 100, health: health[vmid] })),
  });
}

const opts = (o: Partial<SensingOptions> = {}): SensingOptions => ({
  intervalMs: 1000, probeTimeoutMs: 2000, probeConcurrency: 8, healthFailures: 2, bootGraceMs: 0, roundDeadlineMs: 2000, kvRefreshMs: 10_000,
  alertmanagerHost: '127.0.0.1', insecure: false, ...o,
});

async function probeOnce(health: Record<number, string>, o?: Partial<SensingOptions>) {
  const prober = new Prober(opts(o), fleetWith(health), silentLogger);
  try {
    return await prober.probeAll(Object.keys(health).map(Number));
  } finally {
    await prober.close();
  }
}

describe('sensing: health probes', () => {
  it('2xx is ok and carries certDaysLeft from a JSON body; a plain body is ok without it', async () => {
    const r = await probeOnce({ 101: `${base}/ok/12`, 102: `${base}/plain` });
    expect(r.get(101)).toEqual({ ok: true, certDaysLeft: 12 });
    expect(r.get(102)).toEqual({ ok: true });
  });

  it('an error status is not ok, with the status and the body (whitespace folded) as the reason', async () => {
    const r = await probeOnce({ 103: `${base}/down` });
    expect(r.get(103)).toEqual({ ok: false, reason: 'HTTP 503: service unavailable' });
  });

  it('no answer within probeTimeoutMs, and a refused connection, are failed probes with a reason', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const r = await probeOnce({ 104: `${base}/silent`, 105: `http://127.0.0.1:${port}/` }, { probeTimeoutMs: 300 });
    expect(r.get(104)).toEqual({ ok: false, reason: 'no answer within 300 ms' });
    expect(r.get(105)).toEqual({ ok: false, reason: 'ECONNREFUSED' });
  });

  it('a body that stops coming is no answer either; the next probe on the same lane is not cut by its deadline', async () => {
    const r = await probeOnce({ 120: `${base}/stall`, 121: `${base}/silent`, 122: `${base}/ok/9`, 123: `${base}/plain` }, { probeTimeoutMs: 300, probeConcurrency: 1 });
    expect(r.get(120)).toEqual({ ok: false, reason: 'no answer within 300 ms' });
    expect(r.get(121)).toEqual({ ok: false, reason: 'no answer within 300 ms' });
    expect(r.get(122)).toEqual({ ok: true, certDaysLeft: 9 });
    expect(r.get(123)).toEqual({ ok: true });
  });

  it('a body that never ends is cut at 16 KB: the probe ends with the status, not a timeout', async () => {
    const r = await probeOnce({ 106: `${base}/huge` }, { probeTimeoutMs: 10_000 });
    expect(r.get(106)).toEqual({ ok: false, reason: `HTTP 503: ${'x'.repeat(200)}` });
  });

  it('hundreds of guests through a few lanes: every guest gets its own answer', async () => {
    const health: Record<number, string> = {};
    for (let v = 1000; v < 1300; v++) health[v] = `${base}/vm/${v}`;
    const r = await probeOnce(health, { probeConcurrency: 4 });
    expect(r.size).toBe(300);
    for (let v = 1000; v < 1300; v++) {
      expect(r.get(v)).toEqual(v % 3 === 0 ? { ok: false, reason: `HTTP 500: vm ${v}` } : { ok: true });
    }
  });

  it('an unchanged answer is the same object round after round; a changed one is new', async () => {
    const prober = new Prober(opts(), fleetWith({ 107: `${base}/ok/30`, 108: `${base}/down` }), silentLogger);
    try {
      const first = new Map(await prober.probeAll([107, 108]));
      const second = await prober.probeAll([107, 108]);
      expect(second.get(107)).toBe(first.get(107));
      expect(second.get(108)).toBe(first.get(108));
      expect(second.get(107)).toEqual({ ok: true, certDaysLeft: 30 });
    } finally {
      await prober.close();
    }
  });

  it('a guest with nothing to probe is left out (PVE status alone counts)', async () => {
    const prober = new Prober(opts(), fleetWith({ 109: `${base}/plain` }), silentLogger);
    try {
      const r = await prober.probeAll([109, 4242]);
      expect([...r.keys()]).toEqual([109]);
    } finally {
      await prober.close();
    }
  });

  it('a full round drops guests it no longer probes; a partial one (probeSome) keeps the others', async () => {
    const prober = new Prober(opts(), fleetWith({ 110: `${base}/plain`, 111: `${base}/down` }), silentLogger);
    try {
      expect([...(await prober.probeAll([110, 111])).keys()].sort()).toEqual([110, 111]);
      expect([...(await prober.probeSome([111])).entries()].sort()).toEqual([[110, { ok: true }], [111, { ok: false, reason: 'HTTP 503: service unavailable' }]]);
      expect([...(await prober.probeAll([111])).keys()]).toEqual([111]);
    } finally {
      await prober.close();
    }
  });
});
