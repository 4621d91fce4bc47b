import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../core/mod.ts';
import { isNatsUnavailable, subjects, type Bus, type DeadLetter } from '../bus/mod.ts';
import { collect } from './helpers/bus.ts';
import { testBus, until } from './helpers/bus.ts';

let bus: Bus;
beforeAll(async () => {
  bus = await testBus('consume-test');
});
afterAll(async () => bus.stop());

const event = (node: string, vmid: number) => bus.publish(subjects.guestEvent(node, vmid), 'GuestProbe', { vmid, node, state: 'running', health: 'healthy' });

describe('durable consumer', () => {
  it('one at a time by default: a slow handler holds the next message', async () => {
    const node = `seq${Date.now()}`;
    const order: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const c = await bus.consume<{ vmid: number }>({
      durable: `seq-${Date.now()}`, filter: `fleet.events.guest.${node}.*`,
      handler: async (env) => {
        if (env.data.vmid === 101) await gate;
        order.push(env.data.vmid);
      },
    });
    await event(node, 101);
    await event(node, 102);
    await sleep(300);
    expect(order).toEqual([]);
    release();
    await until(() => order.length === 2);
    expect(order).toEqual([101, 102]);
    await c.stop();
  });

  it('with concurrency, a slow handler does not hold the others, and every message is acked once done', async () => {
    const node = `par${Date.now()}`;
    const done: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const durable = `par-${Date.now()}`;
    const c = await bus.consume<{ vmid: number }>({
      durable, filter: `fleet.events.guest.${node}.*`, concurrency: 4,
      handler: async (env) => {
        if (env.data.vmid === 101) await gate;
        done.push(env.data.vmid);
      },
    });
    for (const v of [101, 102, 103]) await event(node, v);
    await until(() => done.length === 2);
    expect(done).toEqual([102, 103]);
    release();
    await until(() => done.length === 3);
    await until(async () => (await bus.jsm.consumers.info('FLEET', durable)).num_ack_pending === 0);
    await c.stop();
  });

  it('a handler failing because NATS cannot answer (a leader election) is retried on its delivery, past max_deliver, not dead-lettered; other failures still are', async () => {
    const node = `elect${Date.now()}`;
    const durable = `elect-${Date.now()}`;
    // what nats.js throws while a cluster elects a stream's leader
    const unavailable = () => Object.assign(new Error('JetStream system temporarily unavailable'), { name: 'JetStreamApiError', code: 10008 });
    expect(isNatsUnavailable(unavailable())).toBe(true);
    expect(isNatsUnavailable(new Error('policy refused'))).toBe(false);
    const tries = new Map<number, number>();
    const handled: number[] = [];
    const c = await bus.consume<{ vmid: number }>({
      durable, filter: `fleet.events.guest.${node}.*`, maxDeliver: 2,
      handler: async (env) => {
        const n = (tries.get(env.data.vmid) ?? 0) + 1;
        tries.set(env.data.vmid, n);
        if (env.data.vmid === 101 && n <= 3) throw unavailable();
        if (env.data.vmid === 102) throw new Error('bad input');
        handled.push(env.data.vmid);
      },
    });
    // the first dead letter of this node's subjects: 102's (101 never gets one)
    const letter = collect<DeadLetter>(bus, `fleet.dlq.fleet.events.guest.${node}.>`, 1, 20_000);
    await event(node, 101);
    await event(node, 102);
    await until(() => handled.includes(101), 15_000);
    expect(tries.get(101)).toBe(4);
    const [l] = await letter;
    expect(l.env.data.subject).toBe(`fleet.events.guest.${node}.102`);
    expect(tries.get(102)).toBe(2);
    await c.stop();
  });
});
