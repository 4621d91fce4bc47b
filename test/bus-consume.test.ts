import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../core/mod.ts';
import { subjects, type Bus } from '../bus/mod.ts';
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
});
