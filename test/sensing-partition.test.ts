// Replicated sensing divides the nodes between live replicas through leases in KV
// (agents/sensing/partition.ts): the same assignment everywhere, never one node held twice, a
// replica leaving hands its nodes over, a joining one takes only its share.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kvGet, LeaseRecord, type Bus } from '../bus/mod.ts';
import { silentLogger } from '../core/mod.ts';
import { assign, NodePartition, nodeLeaseKey } from '../agents/sensing/partition.ts';
import { testBus, until } from './helpers/bus.ts';

const NODES = Array.from({ length: 10 }, (_, i) => `ptnode-${i}`);
let bus: Bus;
beforeAll(async () => {
  bus = await testBus('partition-test');
});
afterAll(async () => {
  await bus.stop();
});

const replica = (holder: string) => new NodePartition({ kv: bus.kv.fleetState, holder, nodes: NODES, log: silentLogger, ttlMs: 1500, intervalMs: 100 });

describe('sensing node partition', () => {
  it('assigns every node to one live member, the same on every replica; a joiner takes only what it gets', () => {
    const two = assign(NODES, ['a', 'b']);
    expect(assign(NODES, ['a', 'b'])).toEqual(two);
    expect(new Set(two.values())).toEqual(new Set(['a', 'b']));
    const three = assign(NODES, ['a', 'b', 'c']);
    for (const n of NODES) if (three.get(n) !== 'c') expect(three.get(n)).toBe(two.get(n));
    expect([...three.values()].filter((m) => m === 'c').length).toBeGreaterThan(0);
    expect(assign(NODES, []).size).toBe(0);
  });

  it('two replicas hold disjoint shares covering every node; when one leaves the other holds all', async () => {
    const a = replica('host:1');
    const b = replica('host:2');
    await Promise.all([a.start(), b.start()]);
    const split = () => {
      const oa = a.owned();
      const ob = b.owned();
      expect(oa.filter((n) => ob.includes(n))).toEqual([]); // never both, at any look
      return oa.length + ob.length === NODES.length && oa.length > 0 && ob.length > 0 ? true : undefined;
    };
    await until(split, 15_000, 50, 'both replicas holding their share');
    const expected = assign(NODES, ['host:1', 'host:2']);
    expect(a.owned()).toEqual(NODES.filter((n) => expected.get(n) === 'host:1'));
    // a node the manifest does not list is reported by exactly one replica: the first node's holder
    const anchor = [...NODES].sort()[0];
    expect([a.owns('unlisted-node'), b.owns('unlisted-node')]).toEqual([a.owns(anchor), b.owns(anchor)]);
    expect([a, b].filter((r) => r.owns('unlisted-node'))).toHaveLength(1);
    const lease = await kvGet(bus.kv.fleetState, nodeLeaseKey(b.owned()[0]), LeaseRecord);
    expect(lease?.value.holder).toBe('host:2');

    await b.stop();
    await until(() => (a.owned().length === NODES.length ? true : undefined), 15_000, 50, 'the remaining replica holding every node');
    const c = replica('host:3');
    await c.start();
    await until(() => {
      expect(a.owned().filter((n) => c.owned().includes(n))).toEqual([]);
      return c.owned().length > 0 && a.owned().length + c.owned().length === NODES.length ? true : undefined;
    }, 15_000, 50, 'the joining replica holding its share');
    await Promise.all([a.stop(), c.stop()]);
  });
});
