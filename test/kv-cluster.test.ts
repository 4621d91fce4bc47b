// KV listings on a 3-server cluster with one server SIGKILLed for good: nats-server 2.9 places a
// listing's ordered consumer on any peer of the stream, the dead one included, and about half of
// the creations then never answer. kvList (bus/kv.ts) creates it again after CONSUMER_CREATE_MS:
// every listing completes (before: half of them failed with a timeout, for as long as the server
// stayed down: a replica taking over, or restarted, could not rebuild its state for minutes).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Bus, kvList } from '../bus/mod.ts';
import { startNatsCluster, type NatsClusterHandle } from '../cli/nats-cluster.ts';
import { until } from './helpers/bus.ts';

const dir = mkdtempSync(join(tmpdir(), 'homeostat-kv-cluster-'));
let cluster: NatsClusterHandle | undefined;
let bus: Bus | undefined;
afterAll(async () => {
  await bus?.stop().catch(() => undefined);
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('KV listings with a cluster server down', () => {
  it('every listing completes while one server of three is dead', async () => {
    cluster = await startNatsCluster({ dataDir: dir, size: 3 });
    bus = await Bus.connect({ servers: cluster.url, source: 'kv-cluster', manage: true });
    const kv = bus.kv.fleetState;
    expect((await bus.jsm.streams.info('KV_fleet-state')).config.num_replicas).toBe(3);
    for (let i = 0; i < 50; i++) await kv.put(`guest.${i}`, JSON.stringify({ i }));
    // the server leading the bucket's stream: the worst one to lose
    const leader = (await bus.jsm.streams.info('KV_fleet-state')).cluster?.leader ?? 'homeostat-1';
    const victim = cluster.servers[Number(leader.split('-').pop()) - 1];
    process.kill(victim.pid, 'SIGKILL');
    await until(async () => (await kv.get('guest.1').catch(() => null)) !== null, 60_000);
    for (let round = 0; round < 8; round++) {
      const listed = await kvList(kv, 'guest.', z.object({ i: z.number() }));
      expect(listed.size).toBe(50);
    }
  }, 240_000);
});
