// MTTR: crash one guest per layer of the reference fleet under the full stack; time to healthy
// against the floor measured in the same run (sense interval + the guest's own start-to-healthy
// time through the adapter). Goal: MTTR <= floor + 1 s.
import { createLogger, sleep } from '../core/mod.ts';
import { loadConfig } from '../agents/mod.ts';
import { Bus, kvKeys, kvPut } from '../bus/mod.ts';
import { startStack } from '../cli/stack.ts';
import { buildFleet } from '../fleet/manifest.ts';
import { REFERENCE_MANIFEST } from '../fleet/reference-fleet.ts';
import { benchNats, emit, isMain, round } from './harness.ts';
import { simApi } from '../testkit/mod.ts';

const PICK = [101, 159, 122, 100]; // one guest per layer (none protected)

async function waitFor(fn: () => Promise<boolean>, timeoutMs: number, stepMs = 20): Promise<number> {
  const t0 = performance.now();
  while (performance.now() - t0 < timeoutMs) {
    if (await fn().catch(() => false)) return performance.now();
    await sleep(stepMs);
  }
  throw new Error(`not healthy within ${timeoutMs} ms`);
}

export async function run(): Promise<void> {
  const nats = await benchNats();
  const manifest = structuredClone(REFERENCE_MANIFEST) as typeof REFERENCE_MANIFEST & { policies: Record<string, unknown> };
  manifest.policies = { senseIntervalMs: 1000, cooldownMs: 0 };
  const fleet = buildFleet(manifest);
  const log = createLogger(process.env.LOG_LEVEL ?? 'warn');
  const stack = await startStack({ config: loadConfig({ LOG_LEVEL: 'warn' }), fleet, log, natsUrl: nats.url, sim: { port: 0, http: true } });
  const bus = await Bus.connect({ servers: nats.url, source: 'bench' });
  const sim = simApi({ url: stack.pveUrl!, tokenId: stack.pveTokenId!, tokenSecret: stack.pveTokenSecret! });
  try {
    // let sensing see a healthy fleet first
    await waitFor(async () => (await Promise.all(fleet.guests.map((g) => sim.health(g.vmid)))).every(Boolean), 60_000, 200);
    await sleep(3 * fleet.policies.senseIntervalMs);
    for (const vmid of PICK) {
      const g = fleet.byVmid.get(vmid)!;
      // floor: this guest's own start → healthy through the adapter, measured now
      const addr = { node: g.node, vmid, type: g.type };
      // a deliberate stop: desired state first, so homeostat does not "heal" the measurement
      await kvPut(bus.kv.fleetState, kvKeys.desired(vmid), { state: 'stopped', maintenance: true, by: 'bench', reason: 'measuring boot time', at: new Date().toISOString() });
      await stack.pve!.waitForTask(g.node, await stack.pve!.stop(addr), { timeoutMs: 30_000 });
      const s0 = performance.now();
      await stack.pve!.waitForTask(g.node, await stack.pve!.start(addr), { timeoutMs: 30_000 });
      const bootMeasured = (await waitFor(() => sim.health(vmid), 30_000)) - s0;
      await kvPut(bus.kv.fleetState, kvKeys.desired(vmid), { state: 'running', maintenance: false, by: 'bench', reason: '', at: new Date().toISOString() });
      await sleep(3 * fleet.policies.senseIntervalMs + 1000);
      const floor = fleet.policies.senseIntervalMs + bootMeasured;
      const t0 = performance.now();
      await sim.fault('crash', vmid);
      await waitFor(async () => !(await sim.health(vmid)), 5000, 5);
      const mttr = (await waitFor(() => sim.health(vmid), 60_000)) - t0;
      emit({ bench: 'mttr', vmid, name: g.name, layer: g.layer, mttr_ms: Math.round(mttr), floor_ms: Math.round(floor), sense_interval_ms: fleet.policies.senseIntervalMs, boot_measured_ms: Math.round(bootMeasured), over_floor_ms: Math.round(mttr - floor), ratio: round(mttr / floor), goal: '<= floor + 1000 ms', pass: mttr <= floor + 1000 });
      await sleep(fleet.policies.senseIntervalMs * 3);
    }
  } finally {
    await sim.close();
    await bus.stop();
    await stack.stop();
    await nats.cleanup();
  }
}

if (isMain(import.meta.url)) await run();
