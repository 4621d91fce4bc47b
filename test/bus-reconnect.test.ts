import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sleep } from '../core/mod.ts';
import { Bus, subjects } from '../bus/mod.ts';
import { freePort, startNatsServer, type NatsServerHandle } from '../cli/nats-server.ts';
import { until } from './helpers/bus.ts';

const dir = mkdtempSync(join(tmpdir(), 'homeostat-reconnect-'));
let server: NatsServerHandle | undefined;
afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('reconnect', () => {
  it('survives a server restart without losing or duplicating a JetStream message', async () => {
    const port = await freePort();
    server = await startNatsServer({ dataDir: dir, port });
    const pub = await Bus.connect({ servers: server.url, source: 'pub' });
    const sub = await Bus.connect({ servers: server.url, source: 'sub' });
    const received = new Map<number, number>();
    const consumer = await sub.consume<{ vmid: number }>({
      durable: 'reconnect-test',
      filter: 'fleet.events.guest.rc.*',
      deliver: 'all',
      handler: async (env) => {
        received.set(env.data.vmid, (received.get(env.data.vmid) ?? 0) + 1);
      },
    });
    const total = 200;
    const publishing = (async () => {
      for (let i = 0; i < total; i++) {
        const vmid = 1000 + i;
        await pub.publish(subjects.guestEvent('rc', vmid), 'GuestProbe', { vmid, node: 'rc', state: 'running', health: 'healthy' }, { retryForMs: 60_000 });
        if (i % 20 === 0) await sleep(20);
      }
    })();
    await until(() => received.size > 30);
    await server.stop();
    await sleep(800);
    server = await startNatsServer({ dataDir: dir, port });
    await publishing;
    await until(() => received.size === total, 30_000);
    const info = await pub.jsm.streams.info('FLEET');
    expect(info.state.messages).toBe(total);
    expect([...received.values()].every((n) => n >= 1)).toBe(true);
    await consumer.stop();
    await pub.stop();
    await sub.stop();
  }, 60_000);
});
