// Replicated sensing divides the nodes between live replicas through leases held in a majority of
// lease stores (agents/sensing/partition.ts): the same assignment everywhere, never one node held
// twice, a replica leaving hands its nodes over, a joining one takes only its share; with one
// store of three not answering (its server dead), the other two make the majority.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { Kvm, type KV } from '@nats-io/kv';
import { Bus, kvGet, LeaseRecord } from '../bus/mod.ts';
import { silentLogger } from '../core/mod.ts';
import { assign, NodePartition, nodeLeaseKey, readNodeLeases } from '../agents/sensing/partition.ts';
import { testBus, until } from './helpers/bus.ts';

const NODES = Array.from({ length: 10 }, (_, i) => `ptnode-${i}`);
const tag = Math.random().toString(36).slice(2, 8);
const names = [1, 2, 3].map((i) => `ptest-${tag}-${i}`);
let bus: Bus;
let stores: KV[];
beforeAll(async () => {
  bus = await testBus('partition-test');
  const kvm = new Kvm(bus.nc);
  stores = await Promise.all(names.map((n) => kvm.create(n, { history: 1 })));
});
afterAll(async () => {
  for (const n of names) await bus.jsm.streams.delete(`KV_${n}`).catch(() => undefined);
  await bus.stop();
});

const replica = (holder: string, on: readonly KV[] = stores) => new NodePartition({ stores: on, holder, nodes: NODES, log: silentLogger, ttlMs: 1500, intervalMs: 100 });

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
    // held in every store, and read back by majority
    for (const kv of stores) expect((await kvGet(kv, nodeLeaseKey(b.owned()[0]), LeaseRecord))?.value.holder).toBe('host:2');
    const held = await readNodeLeases(stores, NODES);
    for (const n of NODES) expect(held.get(n)).toBe(expected.get(n));

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

  it('with one store of three not answering, the replicas divide the nodes and a dead one is taken over', async () => {
    // a handle on a bucket no server keeps: every request fails, as the store of a dead server's does
    const gone = await new Kvm(bus.nc).open(`ptest-${tag}-gone`);
    const degraded = [stores[0], gone, stores[2]];
    // the victim on a connection of its own: closing it is a SIGKILL to the others (nothing given up)
    const victimBus = await Bus.connect({ servers: inject('natsUrl'), source: 'partition-victim' });
    const victimStores = await Promise.all([names[0], `ptest-${tag}-gone`, names[2]].map((n) => new Kvm(victimBus.nc).open(n)));
    const a = replica('host:4', degraded);
    const v = replica('host:5', victimStores);
    await Promise.all([a.start(), v.start()]);
    await until(() => {
      expect(a.owned().filter((n) => v.owned().includes(n))).toEqual([]);
      return a.owned().length > 0 && v.owned().length > 0 && a.owned().length + v.owned().length === NODES.length ? true : undefined;
    }, 15_000, 50, 'both replicas holding their share with two stores of three');
    const his = v.owned();
    const mine = a.owned();
    await victimBus.nc.close();
    // a's own nodes stay a's throughout; the victim's come to it once their leases run out
    await until(() => {
      for (const n of mine) expect(a.owns(n), n).toBe(true);
      return his.every((n) => a.owns(n)) ? true : undefined;
    }, 15_000, 20, 'the dead replica\'s nodes taken over');
    const held = await readNodeLeases(degraded, NODES);
    for (const n of NODES) expect(held.get(n)).toBe('host:4');
    await Promise.all([a.stop(), v.stop()]);
  });
});
