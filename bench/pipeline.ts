// Events/s carried sensing → analysis with 1,000 and 5,000 simulated guests (from the burst's
// first event on the bus to analysis having taken the last one, by analysis' own clock: how fast
// analysis is told of a node loss), against raw JetStream publishing of the same events with
// acks, pipelined (256 in flight), in the same run (goal ≥ 0.5×; the time to the last incident
// stored is reported apart: `stored*`); p99 latency from a guest event on the bus to the incident
// it opens (goal ≤ 5 ms); peak RSS of each agent process (goal ≤ 150 MB at 5,000 guests, default
// node flags).
// Five processes, so none pays for another's CPU: nats-server, the simulator, sensing and analysis
// as `homeostat agent <name>` on plain node (dist/, as shipped), and this one, which only injects
// faults and timestamps what it sees on the bus.
//
// What profiling (--cpu-prof on the agents, 5,000 guests) showed, and what was done about it:
// - Every JetStream publish and KV put is a request; with nats.js async traces on, each one built
//   two Error objects with stack traces up front (~8 % of the busy agent's CPU): connections now
//   run with noAsyncTraces. (nats.js still builds one Error per completed request in cancel().)
// - Socket writes (writeBuffer) and GC dominate what is left; the health probes (one HTTP call per
//   running guest per sense interval) are most of sensing's own work, not the event path.
// - The TypeScript loader (tsx) cost ~40-60 MB of RSS per process before any work: agents now run
//   compiled JavaScript, each in its own process, which is also what "every agent ≤ 150 MB" means.
// Second round (issue 16: the burst at 5,000 guests had fallen to 79 events/s):
// - The regression was analysis, not sensing: after every incident message it recounted the
//   open-incidents gauge from scratch (prom-client label hashing per open incident), n² for a
//   burst of n incidents (~12 M gauge updates for 4,900). The gauge is now recounted once per
//   50 ms. 5,000 guests: 79 → ~900 events/s on a loaded host.
// - Sensing already had 256 acked publishes in flight; what each cost was nats.js' request per
//   publish (a timer, a resolver, an Error for the stack, a mux lookup): half of the publisher's
//   CPU. bus/publisher.ts pipelines publishes under one wildcard reply inbox with one timeout
//   sweep; a micro-benchmark of 20,000 acked publishes, 256 in flight: 11-14k/s (js.publish) vs
//   19-32k/s. Events and KV puts (sensing's records, analysis' incidents) go through it, and
//   nothing counts as published before its ack.
// - analysis decoded every event twice (core fast path and durable consumer, zod each time): the
//   consumer now acks, without decoding, what the fast path applied (by Nats-Msg-Id).
// - analysis' outbox chained each message behind a resolved promise, so each left in its own
//   socket write (writeBuffer was the top self-time): a key with nothing in flight is written at
//   once, so one step's messages share a write; at most 256 messages are in flight (unbounded, a
//   burst held every encoded message and timer at once).
// - sensing's per-node listing asked, per guest, whether any listing held it (a scan of the
//   listing): quadratic, 230 ms a round at 5,000 guests; now one pass.
// Third round (issue 16, --cpu-prof of both agents and a process.memoryUsage/v8 heap-space log
// every 0.5 s, 5,000 guests):
// - Analysis validated its own outgoing alerts and incidents with zod (~10 %) and cloned them;
//   the outbox now serialises each output once when it is queued (the incident's JSON serves the
//   stream message and the KV record), without zod: test/analysis-rules validates every output.
// - Every 10 s analysis re-read the fleet state (kvList: 5,000 KV gets, each a request/reply):
//   ~0.4 s of CPU in which events waited (waves p99 270 ms). kvList is one ordered consumer now,
//   validating through the precompiled fast path and yielding to the event loop every 256 values.
// - A burst put all ~15,000 of its messages in the outbox at once (the fast path ignored the
//   high-water mark; peak RSS 307 MB): above it the fast path stands aside and the durable
//   consumer brings the events with backpressure.
// - Agent processes loaded the simulator and the PVE client (proxmox-api, undici) whatever the
//   agent, and made all eight nkeys at start (pure-JS ed25519, ~0.3 s of CPU): analysis' idle RSS
//   at 1,000 guests 139 → 70-90 MB.
// - Socket writes: under the burst, each acked publish and each consumer ack went out in a write
//   of its own (~2,800 writes/s, ~1 KB each, writeBuffer ~20 % of analysis' CPU). Acked publishes
//   and consumer acks now leave once per event-loop turn: ~400 writes/s of ~10 KB.
// - What is left: analysis spends ~0.7 ms of CPU per crashed guest (3 acked writes, the event
//   decoded once and delivered twice, GC ~20 %) against ~0.1 ms for a raw acked publish, so the
//   0.5x goal needs fewer writes per incident, not faster ones. RSS: young generation 32 MB and
//   ~70 MB of node + modules before any work; sensing probes 5,000 guests a second (undici) and
//   promotes ~8 MB/s of round-lived objects, so its old space swings 40 → 130 MB between major
//   GCs, whatever the burst does. Latency: on the shared 2-core host (load 5-11) every hop waits
//   for a CPU; p50 10-25 ms, p99 40-130 ms.
// Fourth round (issue 16; waves split in two legs through analysis' clock, CPU per process over
// the burst from /proc, an in-process replay of the burst through the Analyzer):
// - The wave latency is mostly the second leg (analysis' step → its incident on the bus; the
//   first, event on the bus → analysis, p50 1-3 ms). Right behind a round's events sensing sent
//   its 5,000 metric samples, each awaited alone, so each left in a socket write of its own
//   (writeBuffer 14 % of sensing's CPU) and all landed on analysis and the nats-server at once:
//   samples now go 100 per write, paced over ~250 ms. And every unchanged KV record was rewritten
//   in one round every 10 s (5,000 acked puts at once): each now at its own phase of the period.
//   Same load (5-8): waves p50 11-16 → 6.6-9 ms, p99 38-162 → 27-30 ms.
// - Analysis' outbox stopped intake at 2,000 messages (~700 events of a burst: 3 messages each);
//   the rest came through the durable consumer as writes drained. It now holds 20,000 messages
//   or 32 MB (a 5,000-guest burst is ~8 MB of bytes), queued as bytes in per-key lanes (no
//   promise or closure per message): analysis takes the last burst event 0.7-1.3 s after it is
//   on the bus instead of ~2 s; costs analysis ~10 MB of peak RSS.
// - In-process, the Analyzer costs ~50 µs an event (decode, rules, encode); in the agent ~300 µs:
//   the rest is I/O (each event arrives twice, fast path and durable consumer with its ack; three
//   acked writes) and GC. structuredClone of each incident message was the busiest analysis
//   function (~8 µs): a copy by the schema's shape. Tried and dropped: fewer writes in flight
//   while events come in (analysis' CPU rose), 1,024 events in flight from sensing (no change).
// - On this shared 2-core host the burst is a contest for CPU: ~4 s of CPU (nats-server ~1.1,
//   analysis ~1.6, sensing ~0.5, simulator, this process) in 2-3 s of wall time. What is left for
//   the 0.5x goal is per-event I/O cost in analysis and the nats-server; for 150 MB, V8's young
//   generation (32 MB committed under 5,000 samples/s) and sensing's old space swinging with
//   what each round promotes (probes, listings, records, samples).
// Fifth round, sensing's memory (a process.memoryUsage + v8 heap-space log every 0.1 s, the
// sampling heap profiler keeping what major GCs collect, --trace-gc-nvp, /proc/pid/smaps):
// - Old space grew ~9 MB/s (35 → 110 MB between major GCs): ~5 MB a round was undici's
//   request() per probe (body stream, async iterator, promises, handler: ~1 KB a probe lived
//   long enough to be promoted, it seems until undici's 0.5 s timer sweep), the rest per-guest
//   objects rebuilt every round and kept through it (records, observations, listings as
//   PveGuest objects, 5,000 metric samples with their envelopes, 5,000-entry maps in large-object
//   space). Now: probes drive undici's dispatch with one reusable handler and one deadline timer
//   per lane (no undici timer per probe); records, observations and listings are rewritten in
//   place; probe results live in one map and an unchanged answer is the same object; samples
//   are encoded from the records as they are sent. Promoted in steady state: ~0.6 MB/s; sensing
//   CPU ~0.29 s per s against ~0.41 (same run, load 1.3-2). proxmox-api loaded its own undici 6
//   (only for a default fetch we replace): one undici now (package.json overrides).
// - Peak RSS 234-242 → 160 MB (same runs). The peak is now the start (old space ~43 MB before
//   the first major GCs: the first round's 5,000 discoveries, KV records and samples promote
//   ~26 MB in 2 s), not the burst (~154 MB); once V8's major GCs run every 2-3 s (from ~5 s on)
//   sensing holds 146-152 MB, and a burst 60 s after start did not raise it. What it is made of:
//   the node binary's pages 41.5 MB and libraries 3.7; malloc 15 MB (brk, set in the first round)
//   and ~11 MB of other native mappings; V8's young generation 33.6 MB (two 16 MB semi-spaces: V8
//   grows them once enough has survived scavenges, and shrinks them only when allocation falls
//   under 1 MB/s); old space 34-43 MB, ~29 MB of it live after a full GC (6.3 MB module sources,
//   7.7 MB code and bytecode, the rest per-guest state); code and large objects ~7 MB.
// - Tried and dropped: encoding sensing's guest events without the zod pass (4,900 events:
//   ~24 → ~17 ms of CPU, not worth leaving validation); writing resource figures without
//   undefined (to keep V8's in-place double fields: no change in promoted bytes); the
//   simulator's batch health endpoint (one request per 500 guests) would cut the probes' cost but
//   measure a fleet unlike a real one (one health URL per guest).
// Fifth round, analysis (--cpu-prof of the agent over the burst, a memoryUsage/heap-space log
// every 0.25 s, a replay of the burst through the Analyzer, time-stamps inside the agent):
// - Analysis' own alerts (a GuestDown per crashed guest) came back through its alerts durable and
//   were each decoded with zod to be ignored (only Alertmanager's count): as much decoding as the
//   events' own. The consumer now acks them unread, recognised by the envelope's head
//   (`sentBy`: the head as this codec writes it, source = this agent).
// - Every crash walked all its transitive dependents' incidents to fold young unhealthy ones into
//   it (a third of the Analyzer's time in the burst replay, 33 → 21 µs an event): the incident book
//   indexes open unhealthy guest incidents, and with none open there is nothing to look for.
// - An incident's KV record was a second copy of the JSON inside its stream message: now a view of
//   those bytes. The fast path no longer parses each event's headers for its dedup id.
// - The acked publisher flushed at setImmediate: in the waves an incident waited p50 1.5 ms, p90
//   47 ms for that turn of a busy analysis. With ≤ 32 acks outstanding a publish now goes to the
//   connection at once (nats.js still coalesces one microtask run into one write); batched as
//   before under load. What is left in leg 2 is the connection's own microtask flush behind other
//   work (p50 0.8, p90 12 ms at load 11) and the scheduling of four busy processes on 2 cores.
// - Same runs, load ~2, three pairs against main without these changes: analysis CPU over the
//   burst 1.20-1.27 → 1.05-1.12 s; analysis took the last event 349-380 → 168-305 ms after
//   sensing published it; carried 6,076-6,670 → 6,408-8,645 events/s (0.18-0.24 → 0.21-0.28×).
// - Tried and dropped: the durable consumer alone (no core fast path, 512 pulled at once):
//   nats-server ~20 % less CPU in one run, but leg 1 +0.7-1.3 ms and carried no better; holding
//   the outbox's writes while a burst comes in (intake first): sensing's publishing and stored*
//   got slower (0.07 vs 0.17×), as in the fourth round. Not tried: AckPolicy.All for the events
//   durable: a later ack also acks an earlier message that was nak'ed for redelivery (a handler
//   failure), so an event could be lost; and a consumer created Explicit cannot be switched.
// - RSS (analysis, 5,000 guests, peak 153-159 MB): ~65 MB is node with the bus loaded (zod
//   schemas, nats.js) before any work, V8's young generation 32 MB (5,000 metric samples a second
//   keep allocation far above the 1 MB/s under which V8 shrinks it), old space 17 MB at start →
//   27 MB before the burst → 48 MB in it (4,900 open incidents and firing alerts, ~9,000 outbox
//   messages with their promises), external 12 MB. The carried goal needs analysis to keep pace
//   with sensing's own publishing (~0.3-0.45 s for 4,900 events): ~60 µs of wall time an event
//   on a core shared with nats-server, where analysis spends ~220 µs of CPU per crashed guest.
//
// Phases per fleet size: (1) raw JetStream publishing with acks, 256 in flight, of the same bytes as
// a guest event (at least 5,000 messages: 1,000 took ~0.15 s and the rate swung 4-7 k/s);
// (2) waves: ten top-layer guests crash per wave through POST /sim/faults → latency samples, on
// the bus and inside the analysis agent (event received → incident stored);
// (3) burst: every guest not crashed by the waves crashes at once (injected inside the simulator,
// so they land in one round) → events/s from the first event on the bus to analysis having taken
// the last (the goal figure) and to the last incident stored, sensing's publishing time, CPU per
// process, and the latency under that burst.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { StorageType } from '@nats-io/jetstream';
import { Bus, encode, makeEnvelope, subjects, type Envelope, type Incident } from '../bus/mod.ts';
import { createLogger } from '../core/mod.ts';
import { buildFleet, type Fleet } from '../fleet/manifest.ts';
import { generateFleet } from '../fleet/reference-fleet.ts';
import { startSimulator } from '../fleet/sim/mod.ts';
import { benchNats, emit, round, stats, isMain } from './harness.ts';

const SIZES = (process.env.BENCH_PIPELINE_SIZES ?? '1000,5000').split(',').map(Number);
const SENSE_MS = Number(process.env.BENCH_PIPELINE_SENSE_MS ?? 1000);
/** Node flags for the agent processes (default: none, as shipped). */
const AGENT_NODE_FLAGS = (process.env.BENCH_PIPELINE_NODE_FLAGS ?? '').split(' ').filter(Boolean);
const WAVES = 10;
const PER_WAVE = 10;
const IN_FLIGHT = 256;
const TOKEN_ID = 'bench@pve!pipeline';
const TOKEN_SECRET = '00000000-0000-4000-8000-00000000b0b0';
const BIN = fileURLToPath(new URL('../bin/homeostat.js', import.meta.url));

function fleetManifest(guests: number) {
  const f = generateFleet({ guests, layers: 4, nodes: 3, bootMs: () => 500 });
  return { name: f.name, nodes: f.nodes, guests: f.guests, policies: { senseIntervalMs: SENSE_MS, probeConcurrency: 32, probeTimeoutMs: 2000 } };
}

function fleetFor(guests: number): Fleet {
  return buildFleet(fleetManifest(guests));
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

/** `homeostat agent <name>` on plain node, as compose and `up --replicas` run it. */
async function startAgent(name: string, env: NodeJS.ProcessEnv, flags: string[]): Promise<ChildProcess> {
  const child = spawn(process.execPath, [...flags, BIN, 'agent', name], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('"ready":true')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`agent ${name} exited (${code}) before it was ready`)));
  });
  return child;
}

/** Current and peak resident memory of a process, from /proc. */
function rssOf(pid: number): { rssMb: number; peakMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMb: round(kb('VmRSS') / 1024, 1), peakMb: round(kb('VmHWM') / 1024, 1) };
}

/** performance.now() of this process as epoch ms (what Date.now() says in another process).
 *  performance.timeOrigin + t was off from Date.now() by up to ~60 ms in some runs (the legs came
 *  out negative): the offset is read from the system clock itself, at the start of each phase. */
let wallOffset = Date.now() - performance.now();
const syncWall = () => void (wallOffset = Date.now() - performance.now());
const wall = (t: number) => wallOffset + t;

/** CPU time (user + system, ms) of each process since `since`, from /proc. */
function cpuOf<K extends string>(pids: Record<K, number>, since?: Record<K, number>): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const k of Object.keys(pids) as K[]) {
    // fields 14 and 15 (utime, stime) in clock ticks (100/s), after the command's closing parenthesis
    const f = readFileSync(`/proc/${pids[k]}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
    const ms = (Number(f[11]) + Number(f[12])) * 10;
    out[k] = since ? ms - since[k] : ms;
  }
  return out;
}

/** The baseline: the same events' bytes published to a JetStream stream, acks awaited, IN_FLIGHT at once. */
async function rawJetStream(bus: Bus, n: number, bytes: Uint8Array): Promise<number> {
  const stream = 'BENCH_RAW';
  await bus.jsm.streams.add({ name: stream, subjects: ['bench.raw.>'], storage: StorageType.File }).catch(() => undefined);
  await bus.jsm.streams.purge(stream);
  const t0 = performance.now();
  const inFlight = new Set<Promise<unknown>>();
  for (let i = 0; i < n; i++) {
    const p = bus.js.publish(`bench.raw.${i % 1000}`, bytes).finally(() => inFlight.delete(p));
    inFlight.add(p);
    if (inFlight.size >= IN_FLIGHT) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  const perSec = n / ((performance.now() - t0) / 1000);
  await bus.jsm.streams.delete(stream);
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
  const dir = mkdtempSync(join(tmpdir(), 'homeostat-pipeline-'));
  const fleetFile = join(dir, 'fleet.json');
  writeFileSync(fleetFile, JSON.stringify(fleetManifest(n)));
  const here = fileURLToPath(import.meta.url);
  const simChild = fork(here, ['--sim', String(n)], { execArgv: ['--import', 'tsx'] });
  const sim = await new Promise<{ url: string }>((r) => simChild.once('message', (m) => r(m as { url: string })));
  const agents: ChildProcess[] = [];
  try {
    const sample = makeEnvelope('sensing', 'GuestStateChanged', { vmid: 1000, node: 'node-0', name: 'guest-1000', state: 'stopped', previousState: 'running', health: 'unknown', previousHealth: 'healthy', reason: 'running → stopped' });
    const bytes = encode(subjects.guestEvent('node-0', 1000), sample);
    await rawJetStream(bus, Math.min(n, 2000), bytes); // warm-up
    const rawN = Math.max(n, 5000);
    const raw = await rawJetStream(bus, rawN, bytes);
    emit({ bench: 'pipeline', guests: n, phase: 'raw-jetstream', messages: rawN, bytes: bytes.length, inFlight: IN_FLIGHT, msgsPerSec: Math.round(raw) });

    const eventAt = new Map<string, number>();
    // t: seen on the bus here (performance.now()); openedAt: the analyzer's clock (Date.now()) in
    // the step that took the event: analysis' own time of receiving it, decoded
    const incidentAt = new Map<number, { t: number; cause?: string; openedAt: number }>();
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
        if (env.data.rootCause.vmid !== undefined) incidentAt.set(env.data.rootCause.vmid, { t: performance.now(), cause: env.causationId, openedAt: Date.parse(env.data.openedAt) });
      },
    });
    const env = { ...process.env, NATS_URL: nats.url, PVE_URL: sim.url, PVE_TOKEN_ID: TOKEN_ID, PVE_TOKEN_SECRET: TOKEN_SECRET, HOMEOSTAT_FLEET: fleetFile, LOG_LEVEL: 'warn', NATS_CREDS: '' };
    const analysis = await startAgent('analysis', env, flags);
    agents.push(analysis);
    const sensing = await startAgent('sensing', env, flags);
    agents.push(sensing);
    await until(() => discovered >= n, 180_000, `GuestDiscovered for ${n} guests`);
    const idle = { sensing: rssOf(sensing.pid!), analysis: rssOf(analysis.pid!) };

    const caused = (vmids: number[]) => vmids.map((v) => incidentAt.get(v)).filter((x) => x?.cause && eventAt.has(x.cause)).map((x) => ({ ...x!, event: eventAt.get(x!.cause!)! }));
    const latencies = (vmids: number[]) => caused(vmids).map((x) => x.t - x.event);
    // the same path in two legs, through analysis' clock (ms resolution): event on the bus →
    // analysis' step took it; that step → its incident on the bus (analysis' work and the writes)
    const legs = (vmids: number[]) => {
      const c = caused(vmids);
      const toAnalysis = stats(c.map((x) => x.openedAt - wall(x.event)));
      const toBus = stats(c.map((x) => wall(x.t) - x.openedAt));
      return { toAnalysisP50Ms: toAnalysis.p50, toAnalysisP99Ms: toAnalysis.p99, toIncidentP50Ms: toBus.p50, toIncidentP99Ms: toBus.p99 };
    };
    const top = fleet.guests.filter((g) => g.layer === 4).map((g) => g.vmid);
    const waveVmids: number[] = [];
    syncWall();
    for (let w = 0; w < WAVES; w++) {
      const wave = top.slice(w * PER_WAVE, (w + 1) * PER_WAVE);
      waveVmids.push(...wave);
      await injectCrashes(sim.url, wave);
      await until(() => wave.every((v) => incidentAt.has(v)), 30_000, `incidents of wave ${w}`);
    }
    const wave = stats(latencies(waveVmids));
    emit({ bench: 'pipeline', guests: n, phase: 'waves', events: wave.n, perWave: PER_WAVE, p50Ms: wave.p50, p99Ms: wave.p99, maxMs: wave.max, ...legs(waveVmids), goalP99Ms: 5, pass: wave.p99 <= 5 });

    const waveSet = new Set(waveVmids);
    const burst = fleet.guests.map((g) => g.vmid).filter((v) => !waveSet.has(v));
    const procs = { nats: nats.pid, sim: simChild.pid!, sensing: sensing.pid!, analysis: analysis.pid!, bench: process.pid };
    syncWall();
    const cpu0 = cpuOf(procs);
    const t0 = performance.now();
    await ask(simChild, { crash: burst }, 'crashed');
    const injectedMs = performance.now() - t0;
    await until(() => burst.every((v) => incidentAt.has(v)), 300_000, `incidents of the burst (${burst.length})`);
    const causes = burst.map((v) => incidentAt.get(v)!).filter((x) => x.cause && eventAt.has(x.cause));
    const first = Math.min(...causes.map((x) => eventAt.get(x.cause!)!));
    const lastEvent = Math.max(...causes.map((x) => eventAt.get(x.cause!)!));
    const cpu = cpuOf(procs, cpu0);
    const last = Math.max(...burst.map((v) => incidentAt.get(v)!.t));
    // the goal figure: the first event on the bus → analysis took the last one (its own clock)
    const taken = Math.max(...causes.map((x) => x.openedAt));
    const carriedPerSec = causes.length / ((taken - wall(first)) / 1000);
    // informational: → the last incident stored
    const perSec = burst.length / ((last - first) / 1000);
    const lat = stats(latencies(burst));
    const loaded = { sensing: rssOf(sensing.pid!), analysis: rssOf(analysis.pid!) };
    const peak = Math.max(loaded.sensing.peakMb, loaded.analysis.peakMb);
    emit({
      bench: 'pipeline', guests: n, phase: 'burst', events: burst.length, injectMs: Math.round(injectedMs),
      carried: causes.length, carriedMs: Math.round(taken - wall(first)), carriedPerSec: Math.round(carriedPerSec),
      rawJetStreamPerSec: Math.round(raw), ratioVsRaw: round(carriedPerSec / raw, 3), goalRatio: 0.5, passRatio: carriedPerSec / raw >= 0.5,
      sensingPublishMs: Math.round(lastEvent - first), analysisTakenAfterMs: Math.round(taken - wall(lastEvent)),
      storedMs: Math.round(last - first), storedPerSec: Math.round(perSec), storedRatioVsRaw: round(perSec / raw, 3),
      cpuMs: cpu,
      p50Ms: lat.p50, p99Ms: lat.p99,
      sensingRssMb: loaded.sensing.rssMb, sensingPeakMb: loaded.sensing.peakMb, analysisRssMb: loaded.analysis.rssMb, analysisPeakMb: loaded.analysis.peakMb,
      sensingIdleMb: idle.sensing.rssMb, analysisIdleMb: idle.analysis.rssMb,
      nodeFlags: flags.join(' ') || 'none', goalRssMb: n >= 5000 ? 150 : undefined, passRss: n >= 5000 ? peak <= 150 : undefined,
    });
  } finally {
    for (const a of agents) {
      if (a.exitCode === null) {
        a.kill('SIGTERM');
        await new Promise((r) => a.once('exit', r));
      }
    }
    simChild.send({ exit: true });
    await new Promise((r) => simChild.once('exit', r));
    await bus.stop();
    await nats.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run(): Promise<void> {
  // the agents run the shipped JavaScript: build it when a source is newer
  const { build, isStale } = await import('../scripts/build.mjs');
  if (isStale() && !build()) throw new Error('the build of dist/ failed');
  for (const n of SIZES) await one(n, AGENT_NODE_FLAGS);
}

if (process.argv[2] === '--sim') await simMain(Number(process.argv[3]));
else if (isMain(import.meta.url)) await run();
