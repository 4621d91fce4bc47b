// Poison never blocks: bad messages are terminated in a form nats-server 2.9 honours (one dead
// letter per bad message per consumer, no redelivery), every durable has a delivery limit whose
// advisory becomes a dead letter, configs are brought up to date at start, and after a flood of
// malformed approved actions a crash is still healed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FLEET_STREAM, subjects, type Bus, type DeadLetter, type Envelope } from '../bus/mod.ts';
import { collect, testBus, until } from './helpers/bus.ts';
import { testStack } from './helpers/stack.ts';

let bus: Bus;
let publisher: Bus;
beforeAll(async () => {
  bus = await testBus('poison-test');
  publisher = await testBus('raw');
});
afterAll(async () => {
  await bus.stop();
  await publisher.stop();
});

const enc = new TextEncoder();
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Dead letters published for subjects under `original` by the bus named `source` from now on
 *  (other test files' stacks on the shared nats-server dead-letter the same garbage: their letters
 *  are theirs). `count()` reads what arrived so far. */
function lettersBy(source: string, original: string) {
  const letters: DeadLetter[] = [];
  const sub = publisher.nc.subscribe(subjects.dlq(original), {
    callback: (_e, m) => {
      const d = (JSON.parse(new TextDecoder().decode(m.data)) as Envelope<DeadLetter>).data;
      if (d.receivedBy === source) letters.push(d);
    },
  });
  return { count: async () => (await publisher.nc.flush(), letters.length), stop: () => sub.unsubscribe() };
}

/** Dead letters stored for subjects under `original` (a pattern of the original subjects). */
async function storedLetters(b: Bus, original: string): Promise<number> {
  const info = await b.jsm.streams.info(FLEET_STREAM, { subjects_filter: subjects.dlq(original) });
  return Object.values(info.state.subjects ?? {}).reduce((a, n) => a + n, 0);
}

describe('poison on durable consumers', () => {
  it('100 malformed stored messages: 100 dead letters, none redelivered, the next valid one is handled', async () => {
    const durable = `poison-a-${Date.now()}`;
    const seen: string[] = [];
    const c = await bus.consume<{ reason?: string }>({
      durable,
      filter: 'fleet.events.guest.poisona.*',
      ackWaitMs: 400,
      handler: async (env: Envelope<{ reason?: string }>) => {
        seen.push(env.data.reason ?? '');
      },
    });
    const letters = lettersBy('poison-test', 'fleet.events.guest.poisona.>');
    for (let i = 0; i < 100; i++) await publisher.js.publish(`fleet.events.guest.poisona.${i}`, enc.encode(`garbage ${i}`));
    await publisher.publish(subjects.guestEvent('poisona', 999), 'GuestProbe', { vmid: 999, node: 'poisona', state: 'running', health: 'healthy', reason: 'after' });
    await until(() => seen.includes('after'), 10_000);
    await pause(1500); // several ack waits: a message the server did not drop comes back by now
    const info = await bus.jsm.consumers.info(FLEET_STREAM, durable);
    expect(info.num_redelivered).toBe(0);
    expect(info.num_ack_pending).toBe(0);
    expect(await letters.count()).toBe(100);
    letters.stop();
    await c.stop();
  });

  it('a durable whose config changed is updated at start (ack wait, delivery limit)', async () => {
    const durable = `poison-b-${Date.now()}`;
    const handler = async () => undefined;
    await (await bus.consume({ durable, filter: 'fleet.events.guest.poisonb.*', ackWaitMs: 30_000, maxDeliver: 5, handler })).stop();
    await (await bus.consume({ durable, filter: 'fleet.events.guest.poisonb.*', ackWaitMs: 2000, maxDeliver: 7, handler })).stop();
    const info = await bus.jsm.consumers.info(FLEET_STREAM, durable);
    expect(info.config.ack_wait).toBe(2000 * 1_000_000);
    expect(info.config.max_deliver).toBe(7);
  });

  it('a message never acknowledged (hung handler) is dead-lettered once, with the reason, from the max-deliveries advisory', async () => {
    const durable = `poison-c-${Date.now()}`;
    let release!: () => void;
    const hung = new Promise<void>((r) => (release = r));
    const c = await bus.consume<{ reason?: string }>({
      durable,
      filter: 'fleet.events.guest.poisonc.*',
      ackWaitMs: 300,
      maxDeliver: 2,
      concurrency: 4,
      handler: async (env) => {
        if (env.data.reason === 'hang') await hung;
      },
    });
    const dlq = collect<DeadLetter>(publisher, subjects.dlq('fleet.events.guest.poisonc.>'), 1, 10_000);
    await publisher.publish(subjects.guestEvent('poisonc', 107), 'GuestProbe', { vmid: 107, node: 'poisonc', state: 'running', health: 'healthy', reason: 'hang' });
    const [letter] = await dlq;
    expect(letter.env.data.reason).toMatch(/not acknowledged after 2 deliveries/);
    expect(letter.env.data.subject).toBe(subjects.guestEvent('poisonc', 107));
    await pause(1000);
    expect(await storedLetters(publisher, 'fleet.events.guest.poisonc.>')).toBe(1);
    release();
    await c.stop();
  });
});

describe('the loop after a flood of malformed approved actions', () => {
  it('250 malformed on fleet.actions.approved: one dead letter each per consumer, and a crash is still healed', async () => {
    const stack = await testStack({ source: 'poison-e2e' });
    try {
      for (let i = 0; i < 250; i++) await stack.bus.js.publish(subjects.action('approved'), enc.encode(i % 2 ? `{"broken ${i}` : JSON.stringify({ id: `x${i}`, data: { verb: 'explode' } })));
      // two durable consumers read fleet.actions.approved (the action agent's and the decision
      // agent's): one letter per bad message for each. The core subscribers of the same subjects
      // (the workflows agent's action tracker, analysis) skip bad messages without a letter.
      const consumers = 2;
      let letters = 0;
      await until(async () => {
        const n = await storedLetters(stack.bus, subjects.action('approved'));
        const settled = n >= 250 * consumers && n === letters;
        letters = n;
        return settled;
      }, 20_000, 1000);
      expect(letters).toBe(250 * consumers);
      await stack.api.fault('crash', 159);
      const healthy = async () => (await stack.api.fleet()).guests.find((g) => g.vmid === 159)?.healthy === true;
      await until(async () => !(await healthy()), 5000);
      await until(healthy, 25_000);
      expect(await storedLetters(stack.bus, subjects.action('approved'))).toBe(letters);
    } finally {
      await stack.stop();
    }
  }, 90_000);
});
