// Events/s through sensing → analysis with 1,000 and 5,000 simulated guests, against raw NATS
// publish/subscribe of the same number of messages in the same run; p99 latency from a guest
// event on the bus to the incident it opens (goal ≤ 5 ms); RSS of the agents' process (sensing +
// analysis together, as `homeostat up` runs them; goal ≤ 150 MB at 5,000 guests).
// Four processes, so none pays for another's CPU: nats-server, the simulator, the agents, and
// this one, which only injects faults and timestamps what it sees on the bus.
//
// Phases per fleet size: (1) raw core NATS pub/sub of N messages of the same size as a guest event;
// (2) waves: ten top-layer guests crash per wave through POST /sim/faults → latency samples, on
// the bus and inside the analysis agent (event received → incident stored);
// (3) burst: every other guest crashes at once (injected inside the simulator, so they land in
// one round) → events/s from the first event on the bus to the last incident, split into
// sensing's publishing time and analysis' tail, and the latency under that burst.
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Bus, encode, makeEnvelope, subjects, type Envelope, type Incident } from '../bus/mod.ts';
import { createLogger } from '../core/mod.ts';
import { loadConfig } from '../agents/mod.ts';
import type { AnalysisHandle } from '../agents/analysis/mod.ts';
import { startStack } from '../cli/stack.ts';
import { buildFleet, type Fleet } from '../fleet/manifest.ts';
import { generateFleet } from '../fleet/reference-fleet.ts';
import { startSimulator } from '../fleet/sim/mod.ts';
import { benchNats, emit, round, stats, isMain } from './harness.ts';

const SIZES = (process.env.BENCH_PIPELINE_SIZES ?? '1000,5000').split(',').map(Number);
const SENSE_MS = Number(process.env.BENCH_PIPELINE_SENSE_MS ?? 1000);
/** V8 flags for the agents' process (default: none, as shipped). */
const AGENT_NODE_FLAGS = (process.env.BENCH_PIPELINE_NODE_FLAGS ?? '').split(' ').filter(Boolean);
/** Then the largest size once more with a capped heap: V8 otherwise lets garbage pile up to
 *  100+ MB before collecting, which is most of the RSS over the ~110 MB that node + tsx + the
 *  modules cost before any work. */
const TUNED_FLAGS = ['--max-semi-space-size=2', '--max-old-space-size=96'];
const WAVES = 10;
const PER_WAVE = 10;
const TOKEN_ID = 'bench@pve!pipeline';
const TOKEN_SECRET = '00000000-0000-4000-8000-00000000b0b0';

type Lat = ReturnType<AnalysisHandle['latency']>;
interface AgentsArgs { natsUrl: string; pveUrl: string; guests: number }

function fleetFor(guests: number): Fleet {
  const f = generateFleet({ guests, layers: 4, nodes: 3, bootMs: () => 500 });
  return buildFleet({ name: f.name, nodes: f.nodes, guests: f.guests, policies: { senseIntervalMs: SENSE_MS, probeConcurrency: 32, probeTimeoutMs: 2000 } });
}

/** Child process: the simulator alone, so neither the agents nor the measuring side pay for its CPU. */
async function simMain(guests: number): Promise<void> {
  const sim = await startSimulator({ fleet: fleetFor(guests), port: 0, http: true, timeScale: 1, tokenId: TOKEN_ID, tokenSecret: TOKEN_SECRET, log: createLogger('silent') });
  process.on('message', (m: { exit?: boolean; crash?: number[] }) => {
    // the burst lands in one go (HTTP injection of thousands of faults would span several rounds)
    if (m.crash) {
      for (const vmid of m.crash) sim.state.faults.inject({ kind: "crash", target: String(vmid) });
      process.send!({ crashed: m.crash.length });
    }
    if (m.exit) void sim.stop().finally(() => process.exit(0));
  });
  process.send!({ url: sim.url });
}

/** Child process: sensing + analysis only, as `homeostat agent …` would run them. */
async function agentsMain(args: AgentsArgs): Promise<void> {
  const config = loadConfig({}, { PVE_URL: args.pveUrl, PVE_TOKEN_ID: TOKEN_ID, PVE_TOKEN_SECRET: TOKEN_SECRET, LOG_LEVEL: 'warn' });
  const stack = await startStack({ config, fleet: fleetFor(args.guests), log: createLogger('warn'), natsUrl: args.natsUrl, agents: ['analysis', 'sensing'], services: { pveTokenId: TOKEN_ID, pveTokenSecret: TOKEN_SECRET } });
  const analysis = stack.agents.get('analysis') as AnalysisHandle;
  process.on('message', (m: { rss?: boolean; exit?: boolean }) => {
    if (m.rss) process.send!({ rss: process.memoryUsage().rss, heapUsed: process.memoryUsage().heapUsed, inAgent: analysis.latency() });
    if (m.exit) void stack.stop().finally(() => process.exit(0));
  });
  process.send!({ ready: true });
}

async function rawCore(bus: Bus, n: number, bytes: Uint8Array): Promise<number> {
  const subject = 'bench.pipeline.raw';
  let got = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const sub = bus.nc.subscribe(subject, {
    callback: () => {
      if (++got === n) done();
    },
  });
  await bus.nc.flush();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    bus.nc.publish(subject, bytes);
    if (i % 1000 === 999) await bus.nc.flush();
  }
  await all;
  const perSec = n / ((performance.now() - t0) / 1000);
  sub.unsubscribe();
  return perSec;
}

function ask<T>(child: ChildProcess, msg: object, key: string): Promise<T> {
  return new Promise((resolve) => {
    const on = (m: Record<string, unknown>) => {
      if (key in m) {
        child.off('message', on);
        resolve(m as T);
      }
    };
    child.on('message', on);
    child.send(msg);
  });
}

async function until(fn: () => boolean, ms: number, what: string): Promise<void> {
  for (const end = Date.now() + ms; !fn(); await new Promise((r) => setTimeout(r, 20))) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
  }
}

async function injectCrashes(pveUrl: string, vmids: number[]): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < vmids.length) {
      const vmid = vmids[next++];
      const res = await fetch(`${pveUrl}/sim/faults`, {
        method: 'POST',
        headers: { authorization: `PVEAPIToken=${TOKEN_ID}=${TOKEN_SECRET}`, 'content-type': 'application/json' },
        body: JSON.stringify({ kind: 'crash', target: String(vmid) }),
      });
      if (res.status >= 300) throw new Error(`fault injection for ${vmid}: HTTP ${res.status} ${await res.text()}`);
      await res.body?.cancel();
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
}

async function one(n: number, flags: string[]): Promise<void> {
  const nats = await benchNats();
  const bus = await Bus.connect({ servers: nats.url, source: 'bench' });
  const fleet = fleetFor(n);
  const here = fileURLToPath(import.meta.url);
  const simChild = fork(here, ['--sim', String(n)], { execArgv: ['--import', 'tsx'] });
  const sim = await new Promise<{ url: string }>((r) => simChild.once('message', (m) => r(m as { url: string })));
  let child: ChildProcess | undefined;
  try {
    const sample = makeEnvelope('sensing', 'GuestStateChanged', { vmid: 1000, node: 'node-0', name: 'guest-1000', state: 'stopped', previousState: 'running', health: 'unknown', previousHealth: 'healthy', reason: 'running → stopped' });
    const bytes = encode(subjects.guestEvent('node-0', 1000), sample);
    await rawCore(bus, n, bytes); // warm-up
    const raw = await rawCore(bus, n, bytes);
    emit({ bench: 'pipeline', guests: n, phase: 'raw-core', messages: n, bytes: bytes.length, msgsPerSec: Math.round(raw) });

    const eventAt = new Map<string, number>();
    const incidentAt = new Map<number, { t: number; cause?: string }>();
    let discovered = 0;
    bus.nc.subscribe('fleet.events.guest.>', {
      callback: (_e, m) => {
        const env = JSON.parse(new TextDecoder().decode(m.data)) as Envelope<{ vmid: number }>;
        if (env.type === 'GuestDiscovered') discovered++;
        else eventAt.set(env.id, performance.now());
      },
    });
    bus.nc.subscribe('fleet.incidents.*.opened', {
      callback: (_e, m) => {
        const env = JSON.parse(new TextDecoder().decode(m.data)) as Envelope<Incident>;
        if (env.data.rootCause.vmid !== undefined) incidentAt.set(env.data.rootCause.vmid, { t: performance.now(), cause: env.causationId });
      },
    });
    const args: AgentsArgs = { natsUrl: nats.url, pveUrl: sim.url, guests: n };
    child = fork(here, ['--agents', JSON.stringify(args)], { execArgv: ['--import', 'tsx', ...flags] });
    await new Promise<void>((r) => child!.once('message', () => r()));
    await until(() => discovered >= n, 120_000, `GuestDiscovered for ${n} guests`);
    const idle = await ask<{ rss: number }>(child, { rss: true }, 'rss');

    const latencies = (vmids: number[]) => vmids.map((v) => incidentAt.get(v)).filter((x) => x?.cause && eventAt.has(x.cause)).map((x) => x!.t - eventAt.get(x!.cause!)!);
    const top = fleet.guests.filter((g) => g.layer === 4).map((g) => g.vmid);
    const waveVmids: number[] = [];
    for (let w = 0; w < WAVES; w++) {
      const wave = top.slice(w * PER_WAVE, (w + 1) * PER_WAVE);
      waveVmids.push(...wave);
      await injectCrashes(sim.url, wave);
      await until(() => wave.every((v) => incidentAt.has(v)), 30_000, `incidents of wave ${w}`);
    }
    const wave = stats(latencies(waveVmids));
    const inWave = (await ask<{ inAgent: Lat }>(child, { rss: true }, 'rss')).inAgent;
    emit({
      bench: 'pipeline', guests: n, phase: 'waves', events: wave.n, perWave: PER_WAVE, p50Ms: wave.p50, p99Ms: wave.p99, maxMs: wave.max,
      inAgentP50Ms: inWave.p50Ms, inAgentP99Ms: inWave.p99Ms, goalP99Ms: 5, pass: wave.p99 <= 5,
    });

    const waveSet = new Set(waveVmids);
    const burst = fleet.guests.map((g) => g.vmid).filter((v) => !waveSet.has(v));
    const t0 = performance.now();
    await ask(simChild, { crash: burst }, 'crashed');
    const injectedMs = performance.now() - t0;
    await until(() => burst.every((v) => incidentAt.has(v)), 300_000, `incidents of the burst (${burst.length})`);
    const causes = burst.map((v) => incidentAt.get(v)!).filter((x) => x.cause && eventAt.has(x.cause));
    const first = Math.min(...causes.map((x) => eventAt.get(x.cause!)!));
    const lastEvent = Math.max(...causes.map((x) => eventAt.get(x.cause!)!));
    const last = Math.max(...burst.map((v) => incidentAt.get(v)!.t));
    const perSec = burst.length / ((last - first) / 1000);
    const lat = stats(latencies(burst));
    const loaded = await ask<{ rss: number; heapUsed: number; inAgent: Lat }>(child, { rss: true }, 'rss');
    const rssMb = round(loaded.rss / 2 ** 20, 1);
    emit({
      bench: 'pipeline', guests: n, phase: 'burst', events: burst.length, injectMs: Math.round(injectedMs), eventsPerSec: Math.round(perSec),
      sensingPublishMs: Math.round(lastEvent - first), analysisTailMs: Math.round(last - lastEvent),
      rawMsgsPerSec: Math.round(raw), ratioVsRaw: round(perSec / raw, 4), p50Ms: lat.p50, p99Ms: lat.p99, inAgentP99MsAll: loaded.inAgent.p99Ms,
      agentsRssMb: rssMb, agentsIdleRssMb: round(idle.rss / 2 ** 20, 1), heapMb: round(loaded.heapUsed / 2 ** 20, 1),
      nodeFlags: flags.join(' ') || 'none', goalRssMb: n >= 5000 ? 150 : undefined, passRss: n >= 5000 ? rssMb <= 150 : undefined,
    });
  } finally {
    if (child && child.exitCode === null) {
      child.send({ exit: true });
      await new Promise((r) => child!.once('exit', r));
    }
    simChild.send({ exit: true });
    await new Promise((r) => simChild.once('exit', r));
    await bus.stop();
    await nats.cleanup();
  }
}

export async function run(): Promise<void> {
  for (const n of SIZES) await one(n, AGENT_NODE_FLAGS);
  if (!process.env.BENCH_PIPELINE_NODE_FLAGS) await one(Math.max(...SIZES), TUNED_FLAGS);
}

if (process.argv[2] === '--agents') await agentsMain(JSON.parse(process.argv[3]) as AgentsArgs);
else if (process.argv[2] === '--sim') await simMain(Number(process.argv[3]));
else if (isMain(import.meta.url)) await run();
