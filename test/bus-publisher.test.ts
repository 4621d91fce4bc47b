// The pipelined acked publisher (bus/publisher.ts): many publishes in flight, each promise settles
// with the server's own ack or refusal, never before it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PublishRejected } from '../bus/publisher.ts';
import { kvGet, FLEET_STREAM, type Bus } from '../bus/mod.ts';
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
