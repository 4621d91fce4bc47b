// Sensing's node leases on a 3-server cluster (agents/sensing/partition.ts, bus/jetstream.ts): the
// three lease stores sit on three different servers, and when the server leading fleet-state's
// stream is SIGKILLed together with a sensing replica, the surviving replica keeps its own nodes
// without a break and takes the dead one's over, without waiting for fleet-state's election
// (before, the leases lived in fleet-state: nothing could be renewed while nats-server 2.9 elected
// its new leader, at least 4 s, so every replica's leases ran out and no node was polled).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Bus, leaseStoreNames, openLeaseStores } from '../bus/mod.ts';
import { silentLogger } from '../core/mod.ts';
import { NodePartition, readNodeLeases } from '../agents/sensing/partition.ts';
import { startNatsCluster, type NatsClusterHandle } from '../cli/nats-cluster.ts';
import { until } from './helpers/bus.ts';

const NODES = Array.from({ length: 6 }, (_, i) => `pcnode-${i}`);
const dir = mkdtempSync(join(tmpdir(), 'homeostat-partition-cluster-'));
let cluster: NatsClusterHandle | undefined;
const buses: Bus[] = [];
afterAll(async () => {
  for (const b of buses) await b.stop().catch(() => undefined);
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe('sensing leases on a cluster', () => {
  it('a survivor keeps its nodes and takes a dead replica\'s over while fleet-state elects a leader', async () => {
    cluster = await startNatsCluster({ dataDir: dir, size: 3 });
    const admin = await Bus.connect({ servers: cluster.url, source: 'partition-cluster', manage: true });
    buses.push(admin);
    // one store per server (the servers' placement tags)
    const placed = await Promise.all(leaseStoreNames(3).map(async (n) => (await admin.jsm.streams.info(`KV_${n}`)).cluster?.leader));
    expect(new Set(placed).size).toBe(3);
    const leader = (await admin.jsm.streams.info('KV_fleet-state')).cluster?.leader ?? 'homeostat-1';
    const dead = Number(leader.split('-').pop()) - 1;
    const others = cluster.servers.filter((_, i) => i !== dead).map((s) => s.url);
    // the survivor talks to the servers that stay; the victim's connection is closed (its SIGKILL)
    const survivorBus = await Bus.connect({ servers: others.join(','), source: 'survivor' });
    const victimBus = await Bus.connect({ servers: cluster.servers[dead].url, source: 'victim' });
    buses.push(survivorBus);
    const make = async (b: Bus, holder: string) => new NodePartition({ stores: await openLeaseStores(b.nc, 1000), holder, nodes: NODES, log: silentLogger, ttlMs: 3000, intervalMs: 250 });
    const a = await make(survivorBus, 'host:1');
    const v = await make(victimBus, 'host:2');
    await Promise.all([a.start(), v.start()]);
    await until(() => (a.owned().length > 0 && v.owned().length > 0 && a.owned().length + v.owned().length === NODES.length ? true : undefined), 30_000, 50, 'both replicas holding their share');
    const mine = a.owned();
    const his = v.owned();

    // the survivor's nodes, sampled all along: a break is a look that found it not holding one
    const breaks: string[] = [];
    const sampler = setInterval(() => {
      for (const n of mine) if (!a.owns(n)) breaks.push(n);
    }, 20);
    process.kill(cluster.servers[dead].pid, 'SIGKILL');
    await victimBus.nc.close();
    try {
      await until(() => (his.every((n) => a.owns(n)) ? true : undefined), 60_000, 20, 'the dead replica\'s nodes taken over');
      // and kept: a few of the survivor's looks later, still every node, the stores agreeing
      await until(async () => {
        const held = await readNodeLeases(await openLeaseStores(survivorBus.nc, 1000), NODES);
        return NODES.every((n) => held.get(n) === 'host:1') ? true : undefined;
      }, 30_000, 100, 'a majority of the stores naming the survivor for every node');
    } finally {
      clearInterval(sampler);
    }
    expect([...new Set(breaks)]).toEqual([]);
    await Promise.all([a.stop(), v.stop()]);
  }, 180_000);
});
