// Node failover: a node of the reference fleet dies in the simulator; time until every guest it
// ran is healthy on another node, through the whole loop (sensing notices, analysis opens the node
// incident, decision asks for the failover, the workflow waits the fence delay, confirms, fences,
// migrates and starts). Printed next to the fence delay itself, which is most of it by design.
// Goal: < 30 s with the simulator's default 10 s fence delay.   npx tsx bench/failover.ts
import { createLogger, sleep } from '../core/mod.ts';
import { loadConfig } from '../agents/mod.ts';
import { Bus, replayStored, type WorkflowEvent } from '../bus/mod.ts';
import { startStack } from '../cli/stack.ts';
import { buildFleet } from '../fleet/manifest.ts';
import { REFERENCE_MANIFEST } from '../fleet/reference-fleet.ts';
import { benchNats, emit, isMain, round } from './harness.ts';
import { simApi } from '../testkit/mod.ts';

const NODES = (process.env.BENCH_FAILOVER_NODES ?? 'node-b,node-c').split(',');

async function waitFor<T>(fn: () => Promise<T | undefined | false>, timeoutMs: number, stepMs = 25): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(stepMs);
  }
}

export async function run(): Promise<void> {
  const nats = await benchNats();
  // the defaults: 2 s sense interval, 10 s fence delay (the simulator's), real boot times
  const fleet = buildFleet(structuredClone(REFERENCE_MANIFEST));
  const stack = await startStack({ config: loadConfig({ LOG_LEVEL: 'warn' }), fleet, log: createLogger(process.env.LOG_LEVEL ?? 'warn'), natsUrl: nats.url, sim: { port: 0, http: true } });
  const bus = await Bus.connect({ servers: nats.url, source: 'bench-failover' });
  const sim = simApi({ url: stack.pveUrl!, tokenId: stack.pveTokenId!, tokenSecret: stack.pveTokenSecret! });
  try {
    await waitFor(async () => (await sim.fleet()).guests.every((g) => g.healthy), 60_000, 200);
    await sleep(3 * fleet.policies.senseIntervalMs);
    for (const node of NODES) {
      const guests = (await sim.fleet()).guests.filter((g) => g.node === node).map((g) => g.vmid);
      const t0 = Date.now();
      const fault = await sim.fault('node-down', node);
      const healedAt = await waitFor(async () => {
        const f = await sim.fleet();
        return guests.every((v) => {
          const g = f.guests.find((x) => x.vmid === v);
          return g && g.node !== node && g.healthy;
        }) && Date.now();
      }, 120_000);
      // phases from the workflow's own events
      const evs = (await replayStored(bus, 'fleet.workflows.failover.>', new Date(t0 - 1000))).map((e) => ({ ts: Date.parse(e.env.ts), d: e.env.data as WorkflowEvent })).filter((e) => e.d.node === node || e.d.vmid !== undefined);
      const first = (name: string) => evs.find((e) => e.d.event === name)?.ts;
      const planned = first('FAILOVER.PLANNED');
      const fenced = first('NODE.FENCED');
      const total = healedAt - t0;
      emit({
        bench: 'failover', node, guests: guests.length, fence_delay_ms: fleet.policies.fenceDelayMs, sense_interval_ms: fleet.policies.senseIntervalMs,
        healthy_elsewhere_ms: total,
        detect_ms: planned ? planned - t0 : null,
        fence_wait_ms: planned && fenced ? fenced - planned : null,
        recover_ms: fenced ? healedAt - fenced : null,
        beyond_fence_delay_ms: total - fleet.policies.fenceDelayMs,
        ratio_to_fence_delay: round(total / fleet.policies.fenceDelayMs),
        goal: '< 30000 ms', pass: total < 30_000,
      });
      await sim.heal(fault.id);
      await waitFor(async () => (await sim.fleet()).nodes.every((n) => n.online) && (await sim.fleet()).guests.every((g) => g.healthy), 60_000, 200);
      await sleep(3 * fleet.policies.senseIntervalMs);
    }
  } finally {
    await sim.close();
    await bus.stop();
    await stack.stop();
    await nats.cleanup();
  }
}

if (isMain(import.meta.url)) await run();
