// Layered boot: wall time against the critical path of boot times (the floor any boot order can
// reach) and against the runbook's sequential layer-by-layer boot (layer N+1 starts only once all
// of layer N is healthy), both measured in the same run through the same agents and simulator.
// Goals: <= 1.05x the critical path with the reference fleet, <= 1.10x with 1,000 and 5,000 guests in
// 10 layers; and the machine alone (boot-machine.ts) at 1,000 and 5,000 guests: <= 1.10x the critical
// path, its CPU per event not growing with the fleet.
//   npx tsx bench/boot.ts   (BENCH_BOOT=12,1000,5000,machine picks; BENCH_TIME_SCALE=0.5 to go faster)
import { createLogger, sleep } from '../core/mod.ts';
import { loadConfig } from '../agents/mod.ts';
import { Bus } from '../bus/mod.ts';
import { startStack } from '../cli/stack.ts';
import { buildFleet, criticalPathMs, type Fleet } from '../fleet/manifest.ts';
import { generateFleet, REFERENCE_MANIFEST } from '../fleet/reference-fleet.ts';
import { runWorkflow } from '../workflows/mod.ts';
import type { BootSummary } from '../state-machines/mod.ts';
import { runBootMachine } from './boot-machine.ts';
import { benchNats, emit, isMain, round } from './harness.ts';
import { simApi } from '../testkit/mod.ts';

const TIME_SCALE = Number(process.env.BENCH_TIME_SCALE ?? 1);

async function waitFor(fn: () => Promise<boolean>, timeoutMs: number, stepMs = 100): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(stepMs);
  }
}

async function measure(label: string, fleet: Fleet, goal: number): Promise<void> {
  const nats = await benchNats();
  const log = createLogger(process.env.LOG_LEVEL ?? 'warn');
  const big = fleet.guests.length > 100;
  // the boot path only: the workflows agent drives, the decision agent gates, the action agent executes
  const stack = await startStack({
    config: loadConfig({ LOG_LEVEL: 'warn' }), fleet, log, natsUrl: nats.url,
    sim: { port: 0, http: true, timeScale: TIME_SCALE }, agents: ['action', 'decision', 'workflows'],
    options: { action: { maxInFlight: big ? 256 : 16 } },
  });
  const bus = await Bus.connect({ servers: nats.url, source: 'bench-boot' });
  const sim = simApi({ url: stack.pveUrl!, tokenId: stack.pveTokenId!, tokenSecret: stack.pveTokenSecret! });
  // stopped, and the action agent done with every guest (its lock freed after verifying the stop)
  const allStopped = async () => {
    if (!(await sim.fleet()).guests.every((g) => g.status === 'stopped')) return false;
    for await (const _ of await bus.kv.locks.keys('guest.>')) return false;
    return true;
  };
  try {
    await waitFor(async () => (await sim.fleet()).guests.every((g) => g.healthy), 120_000);
    const floor = criticalPathMs(fleet) * TIME_SCALE;

    const down = await runWorkflow(bus, 'shutdown', {});
    if (down.status !== 'done') throw new Error(`shutdown ${down.status}`);
    await waitFor(allStopped, 120_000);
    const t0 = performance.now();
    const boot = await runWorkflow(bus, 'boot', {});
    const clientMs = performance.now() - t0;
    const s = boot.output as BootSummary;
    if (boot.status !== 'done') throw new Error(`boot ${boot.status}: failed ${s.failed.join(',')} held ${s.held.length}`);
    const layeredMs = s.durationMs ?? clientMs;

    // the runbook: one layer at a time, each waiting for the whole layer to be healthy
    const again = await runWorkflow(bus, 'shutdown', {});
    if (again.status !== 'done') throw new Error(`shutdown ${again.status}`);
    await waitFor(allStopped, 120_000);
    const layers = [...new Set(fleet.guests.map((g) => g.layer))].sort((a, b) => a - b);
    const s0 = performance.now();
    for (const layer of layers) {
      const r = await runWorkflow(bus, 'boot', { layer });
      if (r.status !== 'done') throw new Error(`boot --layer ${layer} ${r.status}`);
    }
    const sequentialMs = performance.now() - s0;

    emit({
      bench: 'boot', fleet: label, guests: fleet.guests.length, layers: layers.length, time_scale: TIME_SCALE,
      per_node_concurrency: fleet.policies.bootConcurrencyPerNode,
      critical_path_ms: Math.round(floor), layered_ms: Math.round(layeredMs), layered_client_ms: Math.round(clientMs),
      sequential_layers_ms: Math.round(sequentialMs),
      ratio_vs_critical_path: round(layeredMs / floor), ratio_sequential_vs_critical_path: round(sequentialMs / floor),
      speedup_vs_sequential: round(sequentialMs / layeredMs),
      goal: `<= ${goal}x critical path`, pass: layeredMs / floor <= goal,
    });
  } finally {
    await sim.close();
    await bus.stop();
    await stack.stop();
    await nats.cleanup();
  }
}

export async function run(): Promise<void> {
  const pick = process.env.BENCH_BOOT ?? '12,1000,5000,machine';
  if (pick.split(',').includes('12')) {
    // boot timing only: no protected guest (a fleet-wide shutdown leaves those running)
    const manifest = structuredClone(REFERENCE_MANIFEST);
    for (const g of manifest.guests) (g as { protected?: boolean }).protected = false;
    await measure('reference', buildFleet(manifest), 1.05);
  }
  for (const n of [1000, 5000]) {
    if (!pick.split(',').includes(String(n))) continue;
    // the critical path assumes nothing waits for a free slot: the simulated nodes have no
    // resource limit, so per-node concurrency is not the bottleneck being measured here
    const fleet = generateFleet({ guests: n, layers: 10, policies: { bootConcurrencyPerNode: n } });
    await measure(`generated-${n}x10`, fleet, 1.1);
  }
  if (pick.split(',').includes('machine')) {
    const scale = Number(process.env.BENCH_MACHINE_SCALE ?? 0.1);
    const runs = [];
    await runBootMachine(generateFleet({ guests: 1000, layers: 10 }), 0.01); // warm-up: the JIT, not the machine
    for (const n of [1000, 5000]) {
      const r = await runBootMachine(generateFleet({ guests: n, layers: 10 }), scale);
      runs.push(r);
      emit({
        bench: 'boot', fleet: `machine-${n}x10`, guests: n, layers: 10, time_scale: scale, events: r.events,
        critical_path_ms: Math.round(r.criticalPathMs), layered_ms: Math.round(r.wallMs), ratio_vs_critical_path: round(r.wallMs / r.criticalPathMs),
        machine_us_per_event: round(r.machineUsPerEvent, 1), process_cpu_us_per_event: round(r.cpuUsPerEvent, 1), goal: '<= 1.1x critical path', pass: r.wallMs / r.criticalPathMs <= 1.1,
      });
    }
    const growth = runs[1].machineUsPerEvent / runs[0].machineUsPerEvent;
    emit({ bench: 'boot', metric: 'machine_time_per_event_5000_vs_1000', ratio: round(growth), goal: '<= 1.5 (a step costs what it changes)', pass: growth <= 1.5 });
  }
}

if (isMain(import.meta.url)) await run();
