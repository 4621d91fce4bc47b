import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../core/mod.ts';
import { subjects, MAX_PAYLOAD_BYTES, type Bus, type DeadLetter, type Envelope } from '../bus/mod.ts';
import { collect, testBus, until } from './helpers/bus.ts';

let bus: Bus;
let publisher: Bus;
beforeAll(async () => {
  bus = await testBus('dlq-test');
  publisher = await testBus('raw');
});
afterAll(async () => {
  await bus.stop();
  await publisher.stop();
});

describe('dead-letter path', () => {
  it('core subscription of a subject that is not stored: malformed JSON, wrong schema, oversize → fleet.dlq.<subject>, and the consumer keeps going', async () => {
    const got: number[] = [];
    const sub = bus.subscribe<{ vmid?: number }>('fleet.metrics.dlqnode.*', (env) => {
      got.push(env.data.vmid ?? 0);
    });
    const dlq = collect<DeadLetter>(publisher, 'fleet.dlq.fleet.metrics.dlqnode.>', 3);
    await sleep(50);
    const enc = new TextEncoder();
    publisher.nc.publish('fleet.metrics.dlqnode.101', enc.encode('{"not json'));
    publisher.nc.publish('fleet.metrics.dlqnode.102', enc.encode(JSON.stringify({ id: 'x', ts: new Date().toISOString(), source: 's', type: 'MetricSample', correlationId: 'x', data: { node: 'dlqnode', vmid: 'nope', cpu: 0, mem: 0, maxmem: 0, disk: 0, maxdisk: 0 } })));
    publisher.nc.publish('fleet.metrics.dlqnode.103', new Uint8Array(MAX_PAYLOAD_BYTES + 10).fill(65));
    await publisher.publish(subjects.metrics('dlqnode', 104), 'MetricSample', { node: 'dlqnode', vmid: 104, cpu: 0.1, mem: 1, maxmem: 2, disk: 1, maxdisk: 2 });
    const letters = await dlq;
    expect(letters.map((l) => l.env.data.reason)).toEqual([
      expect.stringMatching(/malformed JSON/),
      expect.stringMatching(/^data vmid/),
      expect.stringMatching(/oversize/),
    ]);
    const big = letters[2].env.data;
    expect(big.truncated).toBe(true);
    expect(big.raw.length).toBeLessThanOrEqual(4096);
    expect(big.size).toBe(MAX_PAYLOAD_BYTES + 10);
    expect(letters[0].env.data.receivedBy).toBe('dlq-test');
    await until(() => got.includes(104));
    expect(bus.dlqCount).toBeGreaterThanOrEqual(3);
    await sub.stop();
  });

  it('core subscription of a stored subject: a bad message is skipped and counted, not dead-lettered (its durable consumers do that, once each)', async () => {
    const got: number[] = [];
    const sub = bus.subscribe<{ vmid: number }>('fleet.events.guest.dlqnode.*', (env) => {
      got.push(env.data.vmid);
    });
    // Other files' stacks share this server, and their durable consumers of fleet.events may
    // dead-letter the bad message themselves: count only letters this subscription made.
    const letters: unknown[] = [];
    const watch = publisher.nc.subscribe('fleet.dlq.fleet.events.guest.dlqnode.>', {
      callback: (_e, m) => {
        const letter = m.json<Envelope<DeadLetter>>();
        if (letter.data.receivedBy === 'dlq-test') letters.push(m.subject);
      },
    });
    await sleep(50);
    const skipped = bus.skippedInvalid;
    publisher.nc.publish('fleet.events.guest.dlqnode.101', new TextEncoder().encode('{"not json'));
    await publisher.publish(subjects.guestEvent('dlqnode', 104), 'GuestProbe', { vmid: 104, node: 'dlqnode', state: 'running', health: 'healthy' });
    await until(() => got.includes(104));
    await publisher.nc.flush();
    expect(bus.skippedInvalid).toBe(skipped + 1);
    expect(letters).toEqual([]);
    watch.unsubscribe();
    await sub.stop();
  });

  it('durable JetStream consumer: a bad stored message is dead-lettered and terminated, the next one is processed', async () => {
    const seen: string[] = [];
    const c = await bus.consume<{ reason?: string }>({
      durable: `dlq-test-${Date.now()}`,
      filter: 'fleet.events.guest.dlqjs.*',
      handler: async (env: Envelope<{ reason?: string }>) => {
        seen.push(env.data.reason ?? '');
      },
    });
    const dlq = collect<DeadLetter>(publisher, 'fleet.dlq.fleet.events.guest.dlqjs.>', 1);
    await publisher.js.publish('fleet.events.guest.dlqjs.201', new TextEncoder().encode('garbage'));
    await publisher.publish(subjects.guestEvent('dlqjs', 202), 'GuestProbe', { vmid: 202, node: 'dlqjs', state: 'running', health: 'healthy', reason: 'after' });
    const [letter] = await dlq;
    expect(letter.env.data.subject).toBe('fleet.events.guest.dlqjs.201');
    await until(() => seen.includes('after'));
    await c.stop();
  });

  it('a request with an invalid body gets an error reply and a dead letter', async () => {
    const srv = bus.serve('fleet.cmd.dlqtest', async () => 'ok');
    await bus.nc.flush();
    const r = await publisher.nc.request('fleet.cmd.dlqtest', new TextEncoder().encode('[]'), { timeout: 2000 });
    const reply = JSON.parse(new TextDecoder().decode(r.data)) as Envelope<{ ok: boolean; error: { code: string } }>;
    expect(reply.data.ok).toBe(false);
    expect(reply.data.error.code).toBe('HOMEOSTAT_ERR_INVALID_MESSAGE');
    await expect(publisher.request(subjects.cmd('dlqtest'), 'Command', { args: {} })).resolves.toBe('ok');
    await srv.stop();
  });

  it('request without responders fails with a clear coded error', async () => {
    await expect(publisher.request(subjects.cmd('nobody.home'), 'Command', { args: {} }, 500)).rejects.toMatchObject({ code: 'HOMEOSTAT_ERR_TIMEOUT' });
  });
});
