// The pipelined acked publisher (bus/publisher.ts): many publishes in flight, each promise settles
// with the server's own ack or refusal, never before it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIRECT_MAX, PublishRejected } from '../bus/publisher.ts';
import { kvGet, kvList, FLEET_STREAM, type Bus } from '../bus/mod.ts';
import { z } from 'zod';
import { testBus } from './helpers/bus.ts';

let bus: Bus;
beforeAll(async () => {
  bus = await testBus('publisher-test');
});
afterAll(async () => {
  await bus.stop();
});

const bytes = (s: string) => new TextEncoder().encode(s);

describe('AckedPublisher', () => {
  it('resolves 2,000 publishes in flight at once with their own stream sequences, in order', async () => {
    const acks = await Promise.all(Array.from({ length: 2000 }, (_, i) => bus.publisher.publish(`fleet.events.guest.pubtest.${i % 50}`, bytes(`{"i":${i}}`))));
    expect(new Set(acks.map((a) => a.stream))).toEqual(new Set([FLEET_STREAM]));
    const seqs = acks.map((a) => a.seq);
    expect(new Set(seqs).size).toBe(2000);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(bus.publisher.inFlight).toBe(0);
  });

  it('with few acks outstanding a publish goes to the connection at once; beyond DIRECT_MAX they wait for the next turn, together', async () => {
    await new Promise((r) => setImmediate(r));
    expect(bus.publisher.inFlight).toBe(0);
    const out = () => bus.nc.stats().outMsgs;
    const before = out();
    const first = bus.publisher.publish('fleet.events.guest.pubtest.direct', bytes('{}'));
    // no wait for a turn of the event loop (a busy analysis' turn held incidents back up to ~50 ms)
    expect(out()).toBe(before + 1);
    const more = Array.from({ length: DIRECT_MAX + 20 }, (_, i) => bus.publisher.publish(`fleet.events.guest.pubtest.direct${i}`, bytes('{}')));
    expect(out()).toBe(before + DIRECT_MAX); // the rest are batched for one write
    await new Promise((r) => setImmediate(r));
    expect(out()).toBe(before + 1 + more.length);
    const acks = await Promise.all([first, ...more]);
    const seqs = acks.map((a) => a.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b)); // in publish order across both ways out
  });

  it('reports a duplicate msg id as the server does', async () => {
    const first = await bus.publisher.publish('fleet.events.guest.pubtest.dup', bytes('{}'), { msgId: 'pubtest-dup-1' });
    const again = await bus.publisher.publish('fleet.events.guest.pubtest.dup', bytes('{}'), { msgId: 'pubtest-dup-1' });
    expect(first.duplicate).toBe(false);
    expect(again.duplicate).toBe(true);
    expect(again.seq).toBe(first.seq);
  });

  it('rejects a subject no stream takes (no responders) and a refused expected sequence', async () => {
    await expect(bus.publisher.publish('nostream.pubtest', bytes('{}'))).rejects.toMatchObject({ code: 'no-responders' });
    const rev = await bus.kvPut(bus.kv.fleetState, 'pubtest.cas', { n: 1 });
    const e = await bus.publisher.publish('$KV.fleet-state.pubtest.cas', bytes('{"n":2}'), { expectLastSubjectSeq: rev + 1000 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PublishRejected);
    expect((e as PublishRejected).code).toBe('refused');
    expect((await kvGet(bus.kv.fleetState, 'pubtest.cas', z.object({ n: z.number() })))?.value.n).toBe(1);
  });

  it('kvPut stores the value at the revision it returns', async () => {
    const rev = await bus.kvPut(bus.kv.fleetState, 'pubtest.put', { n: 7 });
    const got = await kvGet(bus.kv.fleetState, 'pubtest.put', z.object({ n: z.number() }));
    expect(got).toEqual({ value: { n: 7 }, revision: rev });
  });
});

describe('kvList (one ordered read of a prefix)', () => {
  const N = z.object({ n: z.number() });
  it('gives each key\'s last value under the prefix: not other prefixes, not deleted keys, not invalid values', async () => {
    const kv = bus.kv.fleetState;
    await Promise.all(Array.from({ length: 300 }, (_, i) => bus.kvPut(kv, `listtest.k${i}`, { n: i })));
    await bus.kvPut(kv, 'listtest.k7', { n: 700 });
    await kv.delete('listtest.k8');
    await bus.kvPut(kv, 'listtest.bad', { n: 'not a number' });
    await bus.kvPut(kv, 'listtestother.k1', { n: -1 });
    const got = await kvList(kv, 'listtest.', N);
    expect(got.size).toBe(299);
    expect(got.get('listtest.k7')).toEqual({ n: 700 });
    expect(got.get('listtest.k299')).toEqual({ n: 299 });
    expect(got.has('listtest.k8')).toBe(false);
    expect(got.has('listtest.bad')).toBe(false);
    expect(got.has('listtestother.k1')).toBe(false);
  });

  it('an empty prefix, or one with only deleted keys, reads as empty at once', async () => {
    expect((await kvList(bus.kv.fleetState, 'listnothing.', N)).size).toBe(0);
    await bus.kvPut(bus.kv.fleetState, 'listgone.a', { n: 1 });
    await bus.kv.fleetState.delete('listgone.a');
    expect((await kvList(bus.kv.fleetState, 'listgone.', N)).size).toBe(0);
  });

  it('ends while the prefix keeps being written', async () => {
    const kv = bus.kv.fleetState;
    await Promise.all(Array.from({ length: 100 }, (_, i) => bus.kvPut(kv, `listbusy.k${i}`, { n: i })));
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) await bus.kvPut(kv, `listbusy.k${i % 100}`, { n: 1000 + i });
    })();
    const got = await kvList(kv, 'listbusy.', N);
    writing = false;
    await writer;
    expect(got.size).toBe(100);
  });
});
