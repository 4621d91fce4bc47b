// Status calls/s through the PVE adapter (proxmox-api + timeouts, retries, error mapping) against
// the in-process simulator, next to a raw undici GET of the same endpoint in the same run.
// Fleets: the reference fleet (12 guests) and a generated 1,000-guest fleet; HTTP and HTTPS.
// Endpoints: a guest's status/current (what an action waits on) and /cluster/resources?type=vm
// (what sensing polls: the whole fleet in one answer).
import { Agent, fetch } from 'undici';
import { createPveClient, type ProxmoxClient } from '../fleet/pve-client.ts';
import type { Fleet } from '../fleet/manifest.ts';
import { generateFleet, referenceFleet } from '../fleet/reference-fleet.ts';
import { startSimulator } from '../fleet/sim/mod.ts';
import { emit, isMain, round, stats } from './harness.ts';

export interface SimBenchOptions {
  /** Measuring time per side (adapter, raw) and case, split over alternating rounds. */
  durationMs?: number;
  /** Calls in flight at once. */
  concurrency?: number;
  guests?: number[];
  transports?: ('http' | 'https')[];
  out?: (line: Record<string, unknown>) => void;
}

export interface SimBenchResult {
  bench: 'sim';
  guests: number;
  transport: 'http' | 'https';
  endpoint: 'guest-status' | 'cluster-resources';
  concurrency: number;
  adapter_calls_per_s: number;
  raw_calls_per_s: number;
  ratio: number;
  p50_ms: number;
  p99_ms: number;
  raw_p50_ms: number;
  raw_p99_ms: number;
}

type Call = (i: number) => Promise<unknown>;
const ROUNDS = 2;

/** Runs `call` from `concurrency` loops for `durationMs`; returns calls/s and per-call latencies. */
async function measure(call: Call, durationMs: number, concurrency: number): Promise<{ perSec: number; lat: number[] }> {
  for (let i = 0; i < 20; i++) await call(i); // warm up connections and JIT
  const lat: number[] = [];
  let next = 0;
  const t0 = performance.now();
  const end = t0 + durationMs;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const s = performance.now();
        await call(next++);
        lat.push(performance.now() - s);
      }
    }),
  );
  return { perSec: lat.length / ((performance.now() - t0) / 1000), lat };
}

async function benchCase(fleet: Fleet, transport: 'http' | 'https', o: Required<Omit<SimBenchOptions, 'out' | 'guests' | 'transports'>>): Promise<SimBenchResult[]> {
  const sim = await startSimulator({ fleet, port: 0, http: transport === 'http' });
  const client: ProxmoxClient = createPveClient({ url: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret, caPem: sim.caPem, timeoutMs: 10_000 });
  // The baseline gets the same kind of connection pool and trust, and nothing else.
  const agent = new Agent({ connect: sim.caPem ? { ca: sim.caPem } : {}, keepAliveTimeout: 10_000 });
  const headers = { Authorization: `PVEAPIToken=${sim.tokenId}=${sim.tokenSecret}` };
  const raw = async (path: string) => {
    const res = await fetch(`${sim.url}/api2/json${path}`, { headers, dispatcher: agent });
    if (res.status !== 200) throw new Error(`raw GET ${path}: ${res.status} ${res.statusText}`);
    return ((await res.json()) as { data: unknown }).data;
  };
  const guests = fleet.guests;
  const cases: { endpoint: SimBenchResult['endpoint']; adapter: Call; raw: Call }[] = [
    {
      endpoint: 'guest-status',
      adapter: (i) => {
        const g = guests[i % guests.length];
        return client.guestStatus({ node: g.node, vmid: g.vmid, type: g.type });
      },
      raw: (i) => {
        const g = guests[i % guests.length];
        return raw(`/nodes/${g.node}/${g.type}/${g.vmid}/status/current`);
      },
    },
    { endpoint: 'cluster-resources', adapter: () => client.clusterGuests(), raw: () => raw('/cluster/resources?type=vm') },
  ];
  const results: SimBenchResult[] = [];
  try {
    for (const c of cases) {
      // Alternate raw and adapter phases so warm-up and drift do not favour whichever runs second.
      const r = { calls: 0, secs: 0, lat: [] as number[] };
      const a = { calls: 0, secs: 0, lat: [] as number[] };
      for (let round = 0; round < ROUNDS; round++) {
        for (const [acc, call] of [[r, c.raw], [a, c.adapter]] as const) {
          const m = await measure(call, o.durationMs / ROUNDS, o.concurrency);
          acc.calls += m.lat.length;
          acc.secs += m.lat.length / m.perSec;
          for (const x of m.lat) acc.lat.push(x);
        }
      }
      const as = stats(a.lat);
      const rs = stats(r.lat);
      const aPerSec = a.calls / a.secs;
      const rPerSec = r.calls / r.secs;
      results.push({
        bench: 'sim',
        guests: guests.length,
        transport,
        endpoint: c.endpoint,
        concurrency: o.concurrency,
        adapter_calls_per_s: round(aPerSec, 1),
        raw_calls_per_s: round(rPerSec, 1),
        ratio: round(aPerSec / rPerSec, 3),
        p50_ms: as.p50,
        p99_ms: as.p99,
        raw_p50_ms: rs.p50,
        raw_p99_ms: rs.p99,
      });
    }
  } finally {
    await client.close();
    await agent.close();
    await sim.stop();
  }
  return results;
}

export async function run(opts: SimBenchOptions = {}): Promise<SimBenchResult[]> {
  const o = { durationMs: opts.durationMs ?? 2000, concurrency: opts.concurrency ?? 8 };
  const out = opts.out ?? emit;
  const all: SimBenchResult[] = [];
  for (const n of opts.guests ?? [12, 1000]) {
    const fleet = n === 12 ? referenceFleet() : generateFleet({ guests: n, layers: 10 });
    for (const transport of opts.transports ?? ['http', 'https']) {
      for (const r of await benchCase(fleet, transport, o)) {
        out({ ...r });
        all.push(r);
      }
    }
  }
  return all;
}

if (isMain(import.meta.url)) {
  await run({ durationMs: Number(process.env.BENCH_SIM_MS ?? 2000), concurrency: Number(process.env.BENCH_SIM_CONCURRENCY ?? 8) });
}
