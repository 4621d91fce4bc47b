// The singleton lease (bus/lease.ts) through a NATS outage: the holder that cannot renew pauses
// (stops acting) instead of giving up, and gets its lease back, without a second holder ever
// being active, when NATS answers again. The outage is real: the nats-server process is stopped
// (SIGSTOP) for longer than the lease's TTL, as a cluster electing the bucket's leader is.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sleep } from '../core/mod.ts';
import { acquireLease, Bus, leaseKey, type HeldLease, type LeaseState } from '../bus/mod.ts';
import { startNatsServer, type NatsServerHandle } from '../cli/nats-server.ts';
import { until } from './helpers/bus.ts';

const dir = mkdtempSync(join(tmpdir(), 'homeostat-lease-'));
let server: NatsServerHandle | undefined;
const buses: Bus[] = [];
afterAll(async () => {
  if (server) process.kill(server.pid, 'SIGCONT');
  for (const b of buses) await b.stop().catch(() => undefined);
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('singleton lease', () => {
  it('a holder that cannot renew pauses, keeps its lease through an outage longer than the TTL, and a standby never becomes active meanwhile', async () => {
    server = await startNatsServer({ dataDir: dir });
    const a = await Bus.connect({ servers: server.url, source: 'lease-a', manage: true });
    const b = await Bus.connect({ servers: server.url, source: 'lease-b' });
    buses.push(a, b);
    const opts = { name: 'lease-test', ttlMs: 1200, intervalMs: 150 };
    const held = (await acquireLease({ ...opts, kv: a.kv.fleetState, holder: 'a' }))!;
    const states: LeaseState[] = [];
    void (async () => {
      for (let s = held.state; s !== 'lost'; ) {
        s = await held.changed();
        states.push(s);
      }
    })();
    // the standby waits for the lease all along
    const stop = new AbortController();
    let standby: HeldLease | undefined;
    const waiting = acquireLease({ ...opts, kv: b.kv.fleetState, holder: 'b' }, stop.signal).then((l) => (standby = l));
    await sleep(500);
    expect(held.state).toBe('active');

    process.kill(server.pid, 'SIGSTOP');
    await until(() => held.state === 'paused', 3000);
    // well past the TTL: the old code gave up here (its `lost` resolved and its process exited)
    await sleep(2500);
    expect(held.state).toBe('paused');
    process.kill(server.pid, 'SIGCONT');

    await until(() => held.state === 'active', 10_000);
    expect(states).toEqual(['paused', 'active']);
    // the standby did not get it: it was never free (the holder renewed at its own revision)
    await sleep(1500);
    expect(standby).toBeUndefined();
    expect(held.state).toBe('active');

    // a clean release hands it over at once
    await held.release();
    await until(() => standby !== undefined, 5000);
    expect(held.state).toBe('lost');
    expect(standby!.state).toBe('active');
    stop.abort();
    await waiting;
    await standby!.release();
  });

  it('a standby does not take an expired lease on first sight: its holder, back from an outage, renews it first', async () => {
    const c = await Bus.connect({ servers: server!.url, source: 'lease-c' });
    buses.push(c);
    const kv = c.kv.fleetState;
    const key = leaseKey('lease-test-2');
    const record = (expiresAt: number) => JSON.stringify({ holder: 'x', expiresAt, acquiredAt: expiresAt - 1200 });
    // holder x's lease ran out long ago (its NATS was away)
    await kv.put(key, record(Date.now() - 10_000));
    const stop = new AbortController();
    let standby: HeldLease | undefined;
    const waiting = acquireLease({ name: 'lease-test-2', ttlMs: 1200, intervalMs: 150, kv, holder: 'b' }, stop.signal).then((l) => (standby = l));
    await sleep(60);
    // x is back and renews at once (the old code: the standby had taken it at its first look)
    await kv.put(key, record(Date.now() + 1200));
    await sleep(600);
    expect(standby).toBeUndefined();
    // x stops renewing for good: the standby takes over once the lease has expired
    await until(() => standby !== undefined, 5000);
    expect(standby!.state).toBe('active');
    stop.abort();
    await waiting;
    await standby!.release();
  });
});
