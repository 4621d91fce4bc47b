// The workflows' FleetObserver on the simulator: it reads the fleet through `/sim/fleet?view=state`
// (what it needs, not every guest's metrics), and `recent()` answers the checks before each step
// of a big workflow from the last read while it is at most one poll interval old, reading again
// after that. Real nats-server, the simulator over HTTP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, sleep } from '../core/mod.ts';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { startSimulator, type SimulatorHandle } from '../fleet/sim/mod.ts';
import { FleetObserver, simClient } from '../workflows/mod.ts';
import type { SimClient } from '../workflows/sim-client.ts';
import { simApi } from '../testkit/mod.ts';
import { testBus } from './helpers/bus.ts';
import type { Bus } from '../bus/mod.ts';

const POLL_MS = 3000; // long: the checks within it must not race a loaded machine
let sim: SimulatorHandle;
let bus: Bus;
let client: SimClient;
let reads = 0;
let observer: FleetObserver;

beforeAll(async () => {
  sim = await startSimulator({ fleet: referenceFleet(), port: 0, http: true, timeScale: 0.02 });
  bus = await testBus('test-workflows-observer');
  const real = simClient({ url: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret });
  // the real client, counting its fleet reads
  client = { ...real, fleet: () => (reads++, real.fleet()) };
  observer = new FleetObserver({ bus, fleet: referenceFleet(), log: createLogger('silent'), sim: client, pollMs: POLL_MS });
}, 30_000);
afterAll(async () => {
  await observer?.stop();
  await client?.close();
  await bus?.stop();
  await sim?.stop();
});

describe('FleetObserver', () => {
  it('reads state, node and health of every guest', async () => {
    const v = await observer.view();
    expect(v.guests.size).toBe(12);
    expect(v.guests.get(243)).toEqual({ vmid: 243, node: 'node-a', status: 'running', healthy: true });
    expect([...v.nodes.keys()].sort()).toEqual(['node-a', 'node-b', 'node-c']);
  });

  it('recent(): the last view within one poll interval, a fresh read after it', async () => {
    const first = await observer.view();
    const n = reads;
    expect(await observer.recent()).toBe(first);
    expect(reads).toBe(n);
    const api = simApi({ url: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret });
    const f = await api.fault('unhealthy', 155);
    try {
      // within the interval a change is not seen yet: the same view as a waiter's last look
      expect((await observer.recent()).guests.get(155)?.healthy).toBe(true);
      await sleep(POLL_MS + 50);
      const later = await observer.recent();
      expect(reads).toBe(n + 1);
      expect(later).not.toBe(first);
      expect(later.guests.get(155)).toEqual({ vmid: 155, node: 'node-b', status: 'running', healthy: false });
    } finally {
      await api.heal(f.id);
      await api.close();
    }
  });
});
