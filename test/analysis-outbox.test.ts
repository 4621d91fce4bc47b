// The analysis outbox on the real nats-server: what it publishes is what its receivers decode, and
// `below(level)` (the durable consumer's backpressure) resolves only once the backlog is that low.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decode, IncidentRecord, subjects, type Alert, type Bus, type Incident } from '../bus/mod.ts';
import { createLogger, Gate, sleep } from '../core/mod.ts';
import { encodeOutput, Outbox } from '../agents/analysis/outbox.ts';
import type { Output } from '../agents/analysis/mod.ts';
import { collect, testBus } from './helpers/bus.ts';

let bus: Bus;
beforeAll(async () => {
  bus = await testBus('analysis');
});
afterAll(async () => {
  await bus.stop();
});

const tag = `outboxtest${process.pid}`;
const alert = (i: number): Output => {
  const a: Alert = { name: 'HighCPU', status: 'firing', severity: 'warning', fingerprint: `HighCPU:${tag}-${i}`, summary: `${tag} ${i}`, startsAt: new Date().toISOString(), origin: 'analysis', labels: { fleet: tag } };
  return { kind: 'alert', alert: a, causationId: `cause-${i}` };
};

describe('analysis outbox', () => {
  it('an incident is serialised once: its KV record is a view of the stream message\'s bytes (its data), multi-byte text included', () => {
    const at = new Date().toISOString();
    const incident: Incident = {
      id: `inc-${tag}`, kind: 'guest', status: 'open', severity: 'critical', title: 'gäst (101) stoppé — ☃ 🚒', rootCause: { vmid: 101, node: 'nöde-a', reason: 'crashed' },
      symptoms: [], suppressed: [], openedAt: at, updatedAt: at, timeline: [{ ts: at, what: 'ünïcode ✓' }],
    };
    const m = encodeOutput('analysis', { kind: 'incident', phase: 'opened', incident, causationId: 'c-1', correlationId: incident.id });
    const r = decode<Incident>(m.subject, m.bytes);
    expect(r.ok && r.env.data).toEqual(incident);
    expect(m.subject).toBe(subjects.incident(incident.id, 'opened'));
    expect(IncidentRecord.parse(JSON.parse(Buffer.from(m.kv!.bytes).toString('utf8')))).toEqual(incident);
    // the same memory: no second copy of every queued incident
    expect(m.kv!.bytes.buffer).toBe(m.bytes.buffer);
    expect(m.kv!.bytes.byteOffset + m.kv!.bytes.length).toBe(m.bytes.byteOffset + m.bytes.length - 1);
  });

  it('publishes its outputs as receivers decode them; below(level) waits for the backlog to fall to level', async () => {
    const outbox = new Outbox(bus, createLogger('silent'));
    const seen = collect<Alert>(bus, 'fleet.alerts.HighCPU', 600, 20_000);
    await new Promise((r) => setTimeout(r, 50)); // the collector's subscription is in place
    for (let i = 0; i < 600; i++) void outbox.send([alert(i)]);
    expect(outbox.pending).toBe(600);
    let low = false;
    const below = outbox.below(100).then(() => {
      low = true;
      return outbox.pending;
    });
    expect(low).toBe(false);
    expect(await below).toBeLessThanOrEqual(100);
    await outbox.idle();
    expect(outbox.pending).toBe(0);
    expect(outbox.sent).toBe(600);
    await expect(outbox.below(0)).resolves.toBeUndefined();
    const got = (await seen).filter((m) => m.env.data.labels?.fleet === tag);
    expect(got).toHaveLength(600);
    for (const m of got.slice(0, 20)) {
      const r = decode<Alert>(m.subject, new TextEncoder().encode(JSON.stringify(m.env)));
      expect(r.ok).toBe(true);
      expect(m.env.causationId).toMatch(/^cause-\d+$/);
    }
  });
  it('holds a 5,000-guest burst (15,000 messages) without making producers wait, and writes all of it', async () => {
    const outbox = new Outbox(bus, createLogger('silent'));
    const n = 15_000;
    const mark = `${tag}-burst`;
    const seen = collect<Alert>(bus, 'fleet.alerts.HighCPU', n, 60_000);
    await new Promise((r) => setTimeout(r, 50));
    const burst = (i: number): Output => {
      const o = alert(i);
      if (o.kind === 'alert') o.alert.labels = { fleet: mark };
      return o;
    };
    // awaited one by one, as the analysis agent's producers do: only microtasks run in between,
    // so no ack can have come back unless an offer waited for its writes (above 2,000 it did)
    for (let i = 0; i < n; i++) await outbox.offer([burst(i)]);
    expect(outbox.sent).toBe(0);
    expect(outbox.full).toBe(false);
    await outbox.idle();
    expect(outbox.sent).toBe(n);
    expect(outbox.pendingBytes).toBe(0);
    expect((await seen).filter((m) => m.env.data.labels?.fleet === mark)).toHaveLength(n);
  });

  it('writes the messages of one key in the order they were sent, keys interleaved', async () => {
    const outbox = new Outbox(bus, createLogger('silent'));
    const mark = `${tag}-order`;
    const keys = 40;
    const per = 25;
    const seen = collect<Alert>(bus, 'fleet.alerts.HighCPU', keys * per, 20_000);
    await new Promise((r) => setTimeout(r, 50));
    for (let j = 0; j < per; j++) {
      for (let k = 0; k < keys; k++) {
        const o = alert(k);
        if (o.kind === 'alert') {
          o.alert.summary = String(j);
          o.alert.labels = { fleet: mark };
        }
        void outbox.send([o]);
      }
    }
    await outbox.idle();
    const got = (await seen).filter((m) => m.env.data.labels?.fleet === mark);
    expect(got).toHaveLength(keys * per);
    const byKey = new Map<string, number[]>();
    for (const m of got) byKey.set(m.env.data.fingerprint, [...(byKey.get(m.env.data.fingerprint) ?? []), Number(m.env.data.summary)]);
    expect(byKey.size).toBe(keys);
    for (const order of byKey.values()) expect(order).toEqual(Array.from({ length: per }, (_, j) => j));
  });

  it('holds every write while its gate is closed (the replica\'s lease paused), sends them once it opens, drops them if abandoned', async () => {
    const gate = new Gate();
    gate.close();
    const outbox = new Outbox(bus, createLogger('silent'), undefined, gate);
    const got: string[] = [];
    const sub = bus.nc.subscribe('fleet.alerts.HighCPU', { callback: (_e, m) => void got.push(m.json<{ data: Alert }>().data.fingerprint) });
    await bus.nc.flush();
    const sent = outbox.send([alert(1001), alert(1002)]);
    await sleep(500);
    expect(got).toEqual([]);
    expect(outbox.pending).toBe(2);
    gate.reopen();
    await sent;
    await bus.nc.flush();
    expect(got.sort()).toEqual([`HighCPU:${tag}-1001`, `HighCPU:${tag}-1002`]);
    // closed again, then the lease is lost: what waits is abandoned, never written
    gate.close();
    const held = outbox.send([alert(1003)]);
    await sleep(200);
    outbox.abandon();
    await held;
    expect(outbox.failed).toBe(1);
    await sleep(200);
    expect(got).toHaveLength(2);
    sub.unsubscribe();
  });
});
