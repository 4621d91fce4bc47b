import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseSince, subjects, subscribeFleetEvents, type Bus, type FleetEvent } from '../bus/mod.ts';
import { testBus, until } from './helpers/bus.ts';

let bus: Bus;
beforeAll(async () => {
  bus = await testBus('events-test');
});
afterAll(async () => bus.stop());

describe('subscribeFleetEvents', () => {
  it('parses --since durations and ISO times', () => {
    const now = Date.parse('2026-11-23T10:00:00Z');
    expect(parseSince('1h', now)?.toISOString()).toBe('2026-11-23T09:00:00.000Z');
    expect(parseSince('90s', now)?.toISOString()).toBe('2026-11-23T09:58:30.000Z');
    expect(parseSince('2026-11-01T00:00:00Z')?.toISOString()).toBe('2026-11-01T00:00:00.000Z');
    expect(parseSince('yesterday-ish')).toBeUndefined();
  });

  it('replays stored events from --since, then follows new ones', async () => {
    const node = `ev${Date.now()}`;
    const t0 = new Date(Date.now() - 1000);
    for (const vmid of [301, 302, 303]) {
      await bus.publish(subjects.guestEvent(node, vmid), 'GuestStateChanged', { vmid, node, state: 'stopped', health: 'unhealthy' });
    }
    const ac = new AbortController();
    const got: FleetEvent[] = [];
    const reading = (async () => {
      for await (const ev of subscribeFleetEvents(bus, { subject: `fleet.events.guest.${node}.*`, since: t0, signal: ac.signal })) {
        got.push(ev);
        if (got.length === 4) break;
      }
    })();
    await until(() => got.length === 3);
    await bus.publish(subjects.guestEvent(node, 304), 'GuestStateChanged', { vmid: 304, node, state: 'running', health: 'healthy' });
    await reading;
    ac.abort();
    expect(got.map((e) => (e.env.data as { vmid: number }).vmid)).toEqual([301, 302, 303, 304]);
    expect(got.every((e) => typeof e.seq === 'number')).toBe(true);
  });

  it('`homeostat events --since 1h --no-follow --json` prints what was published', async () => {
    const node = `cli${Date.now()}`;
    await bus.publish(subjects.nodeEvent(node), 'NodeUnreachable', { node, status: 'unknown', reachable: false, reason: 'api timeout' });
    const r = spawnSync(process.execPath, ['bin/homeostat.js', 'events', '--since', '1h', '--no-follow', '--json', '--subject', `fleet.events.node.${node}`, '--nats', inject('natsUrl')], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { type: string; data: { node: string } });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ type: 'NodeUnreachable', data: { node } });
    const human = spawnSync(process.execPath, ['bin/homeostat.js', 'events', '--since', '1h', '--no-follow', '--subject', `fleet.events.node.${node}`, '--nats', inject('natsUrl')], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, NO_COLOR: '1' } });
    expect(human.stdout).toMatch(/NodeUnreachable\s+fleet\.events\.node\.\S+\s+node=\S+ status=unknown reason=api timeout/);
    expect(human.stdout).not.toMatch(/\x1b\[/);
  });
});
