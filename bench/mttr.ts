// MTTR: crash one guest per layer of the reference fleet under the full stack; time to healthy
// against the floor measured in the same run (the guest's own start-to-healthy time through the
// adapter). Two modes, same fleet and sense interval: `poll` (sensing finds the crash on its next
// round; goal <= sense interval + boot + 1 s) and `push` (every guest runs the PVE hookscript
// deploy/pve/homeostat-hook, whose post-stop report makes sensing poll at once; goal <= boot + 0.5 s).
//   npx tsx bench/mttr.ts          (BENCH_MTTR=poll or push to run one mode)
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
  const modes = (process.env.BENCH_MTTR ?? 'poll,push').split(',').map((m) => m.trim());
  for (const mode of ['poll', 'push'] as const) if (modes.includes(mode)) await measure(mode);
}

async function measure(mode: 'poll' | 'push'): Promise<void> {
  const nats = await benchNats();
  const manifest = structuredClone(REFERENCE_MANIFEST) as typeof REFERENCE_MANIFEST & { policies: Record<string, unknown> };
  manifest.policies = { senseIntervalMs: 1000, cooldownMs: 0 };
  const fleet = buildFleet(manifest);
  const log = createLogger(process.env.LOG_LEVEL ?? 'warn');
  const stack = await startStack({ config: loadConfig({ LOG_LEVEL: 'warn' }), fleet, log, natsUrl: nats.url, sim: { port: 0, http: true, hooks: mode === 'push' }, options: { sensing: mode === 'push' ? { alertmanagerPort: 0 } : {} } });
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
      // poll: the crash waits for the next round; push: the hook reports it at once
      const floor = (mode === 'poll' ? fleet.policies.senseIntervalMs : 0) + bootMeasured;
      const slack = mode === 'poll' ? 1000 : 500;
      const t0 = performance.now();
      await sim.fault('crash', vmid);
      await waitFor(async () => !(await sim.health(vmid)), 5000, 5);
      const mttr = (await waitFor(() => sim.health(vmid), 60_000)) - t0;
      emit({
        bench: 'mttr', mode, vmid, name: g.name, layer: g.layer, mttr_ms: Math.round(mttr), floor_ms: Math.round(floor), sense_interval_ms: fleet.policies.senseIntervalMs,
        boot_ms: g.bootMs, boot_measured_ms: Math.round(bootMeasured), over_floor_ms: Math.round(mttr - floor), ratio: round(mttr / floor),
        goal: mode === 'poll' ? '<= sense interval + boot + 1000 ms' : '<= boot + 500 ms', pass: mttr <= floor + slack,
      });
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
