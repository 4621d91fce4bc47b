// The global action budget lives on one KV key, written with compare-and-set. A workflow asking the
// gate for many steps at once made every approval race on that key (5,000-guest boot: thousands of
// "too many concurrent updates"); counts made while a write is in flight now go in the next write.
import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Bus } from '../bus/mod.ts';
import { DecisionStore } from '../agents/decision/store.ts';
import { testBus } from './helpers/bus.ts';

let bus: Bus;
beforeAll(async () => {
  bus = await testBus('budget-test');
});
afterAll(async () => {
  await bus.stop();
});

describe('global budget in KV', () => {
  it('200 approvals counted at once: every one recorded, none refused', async () => {
    const kv = await new Kvm(bus.nc).create(`budget_test_${process.pid}_${Date.now()}`);
    const store = new DecisionStore(kv);
    const now = Date.now();
    const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => store.countAction(now + i)));
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(await store.recentActions(now + 200)).toHaveLength(200);
    // two stores (two decision replicas) at once still lose nothing: compare-and-set between them
    const other = new DecisionStore(kv);
    await Promise.all([...Array.from({ length: 50 }, (_, i) => store.countAction(now + 300 + i)), ...Array.from({ length: 50 }, (_, i) => other.countAction(now + 400 + i))]);
    expect(await store.recentActions(now + 500)).toHaveLength(300);
  });
});
