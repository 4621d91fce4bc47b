// `homeostat events` while NATS goes away and comes back (a real nats-server, stopped and started
// again on its port and store): stderr says so both times, stdout stays data, and it follows again.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Bus, subjects } from '../bus/mod.ts';
import { startNatsServer, type NatsServerHandle } from '../cli/nats-server.ts';
import { until } from './helpers/bus.ts';
import { spawnCli } from './helpers/cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'homeostat-events-'));
let nats: NatsServerHandle | undefined;
afterAll(async () => {
  await nats?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('events and a NATS outage', () => {
  it('reports the drop and the return on stderr, then follows again', async () => {
    nats = await startNatsServer({ dataDir: dir, port: 0 });
    const bus = await Bus.connect({ servers: nats.url, source: 'test' }); // creates the streams
    await bus.stop();
    const live = spawnCli(['events', '--subject', 'fleet.events.>'], { NATS_URL: nats.url, HOMEOSTAT_DATA_DIR: '/nonexistent' });
    try {
      await until(() => /following fleet\.events\.> .* Ctrl-C to stop/.test(live.err()), 15_000);
      const port = nats.port;
      await nats.stop();
      await until(() => /disconnected from NATS \(127\.0\.0\.1:\d+\); reconnecting/.test(live.err()), 15_000);
      nats = await startNatsServer({ dataDir: dir, port });
      await until(() => /reconnected to NATS; following fleet\.events\.> again/.test(live.err()), 30_000);
      const pub = await Bus.connect({ servers: nats.url, source: 'test' });
      try {
        await pub.publish(subjects.nodeEvent('after-outage'), 'NodeUp', { node: 'after-outage', status: 'online', reachable: true });
        await until(() => /NodeUp .*fleet\.events\.node\.after-outage/.test(live.out()), 15_000);
      } finally {
        await pub.stop();
      }
      expect(live.out()).not.toMatch(/disconnected|reconnected/); // stdout stays data
    } finally {
      live.p.kill('SIGINT');
    }
    expect((await live.done).code).toBe(0);
  }, 90_000);
});
