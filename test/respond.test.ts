// Responding to incidents through the real binary against a full stack on the twin: `ack`,
// `resolve --reason`, `silence` (add, list, clear, by id prefix); and what the notify agent does
// with them (an acknowledged group is not repeated; a silenced guest is not told about).
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Bus, IncidentRecord, kvGet, kvKeys, kvPut, replayStored, type Incident, type SilenceRecord } from '../bus/mod.ts';
import { createLogger } from '../core/mod.ts';
import { applyOp, planFlush, type NotifyGroup, type Op } from '../agents/notify/mod.ts';
import { SilenceFilter } from '../agents/notify/silences.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';
import { runCli } from './helpers/cli.ts';

describe('what notifications make of ack and silence', () => {
  it('an acknowledged group tells what changes but does not repeat itself', () => {
    const t = { groupWaitMs: 0, groupIntervalMs: 0, repeatIntervalMs: 1000, sendResolved: true };
    const item: Op = { op: 'upsert', group: 'incident:i1', item: { key: 'incident:i1', kind: 'incident', status: 'firing', severity: 'critical', title: 'x', text: 'y', incidentId: 'i1', at: new Date(0).toISOString() } };
    let g = applyOp(undefined, item, 0)!;
    g = planFlush(g, 0, t, ['hook'], 'f')!.group!;
    expect(planFlush(g, 1500, t, ['hook'], 'f')?.sent?.repeat).toBe(true); // not acknowledged: repeats
    const acked = applyOp(g, { op: 'ack', group: 'incident:i1', by: 'cli:ann', at: new Date(10).toISOString() }, 10) as NotifyGroup;
    expect(acked.acknowledged).toEqual({ by: 'cli:ann', at: new Date(10).toISOString() });
    expect(applyOp(acked, { op: 'ack', group: 'incident:i1', by: 'cli:bob', at: new Date(20).toISOString() }, 20)).toBeUndefined();
    expect(planFlush(acked, 5000, t, ['hook'], 'f')?.sent).toBeUndefined();
    const resolved = applyOp(acked, { op: 'resolve', group: 'incident:i1', resolution: 'incident i1 resolved', at: new Date(30).toISOString() }, 30)!;
    expect(planFlush(resolved, 5000, t, ['hook'], 'f')?.sent?.status).toBe('resolved'); // a change is still told
  });

  it('a silenced guest (or any guest of a silenced node) is not notified until the silence ends', async () => {
    const bus = await Bus.connect({ servers: inject('natsUrl'), source: 'silence-test' });
    try {
      const now = Date.now();
      const rec = (id: string, target: { vmid?: number; node?: string }, untilMs: number): SilenceRecord => ({ id, ...target, until: new Date(untilMs).toISOString(), by: 'test', reason: '', at: new Date(now).toISOString() });
      await kvPut(bus.kv.fleetState, kvKeys.silence('sil-t1'), rec('sil-t1', { vmid: 4242 }, now + 60_000));
      await kvPut(bus.kv.fleetState, kvKeys.silence('sil-t2'), rec('sil-t2', { node: 'silenced-node' }, now + 60_000));
      await kvPut(bus.kv.fleetState, kvKeys.silence('sil-t3'), rec('sil-t3', { vmid: 4343 }, now - 1000));
      const up = (vmid: number, node: string): Op => ({ op: 'upsert', group: `incident:${vmid}`, item: { key: `incident:${vmid}`, kind: 'incident', status: 'firing', severity: 'warning', title: 't', text: 't', vmid, node, at: new Date(now).toISOString() } });
      const resolve: Op = { op: 'resolve', group: 'incident:4242', resolution: 'r', at: new Date(now).toISOString() };
      const f = new SilenceFilter(bus, createLogger('silent'));
      const kept = await f.filter([up(4242, 'n1'), up(4444, 'silenced-node'), up(4343, 'n1'), up(4545, 'n1'), resolve], now);
      expect(kept.map((o) => o.op === 'upsert' ? o.item.vmid : 'resolve')).toEqual([4343, 4545, 'resolve']);
      expect(await new SilenceFilter(bus, createLogger('silent')).filter([up(4242, 'n1')], now + 120_000)).toHaveLength(1); // over
    } finally {
      for (const id of ['sil-t1', 'sil-t2', 'sil-t3']) await bus.kv.fleetState.delete(kvKeys.silence(id)).catch(() => undefined);
      await bus.stop();
    }
  });
});

describe('ack, resolve and silence on a stack', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await testStack({ source: 'respond' });
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });
  const cli = (args: string[]) => runCli(args, { NATS_URL: stack.natsUrl, HOMEOSTAT_DATA_DIR: '/nonexistent' });

  it('ack records who has the incident; resolve closes it by hand with the reason in its timeline and trace', async () => {
    const t0 = new Date();
    const { id: fault } = await stack.api.fault('disk-fill', 243); // homeostat does not heal a full disk: the incident stays open
    const opened = await until(async () => (await replayStored(stack.bus, 'fleet.incidents.>', t0)).map((e) => e.env.data as Incident).find((i) => i.rootCause.vmid === 243 && i.status === 'open'), 20_000);
    const prefix = opened.id.slice(4, 14);

    const ack = await cli(['ack', prefix, '--json']);
    expect(ack.code, ack.err).toBe(0);
    expect(JSON.parse(ack.out)).toMatchObject({ incidentId: opened.id, acknowledged: true });
    const stored = await until(async () => (await kvGet(stack.bus.kv.incidents, kvKeys.incident(opened.id), IncidentRecord))?.value.acknowledged, 10_000);
    expect(stored.by).toMatch(/^cli:/);
    const ackEv = (await replayStored(stack.bus, `fleet.incidents.${opened.id}.acknowledged`, t0)).find((e) => e.env.type === 'IncidentAcknowledged');
    expect(ackEv?.env.data).toMatchObject({ id: opened.id, status: 'open', acknowledged: { by: stored.by } });

    const noReason = await cli(['resolve', prefix]);
    expect(noReason.code).toBe(2);
    expect(noReason.err).toMatch(/--reason TEXT is required/);
    const res = await cli(['resolve', prefix, '--reason', 'cleaned the disk by hand']);
    expect(res.code, res.err).toBe(0);
    expect(res.out).toMatch(new RegExp(`${opened.id} resolved by cli:.*: cleaned the disk by hand`));
    const resolved = await until(async () => (await replayStored(stack.bus, `fleet.incidents.${opened.id}.resolved`, t0)).find((e) => e.env.type === 'IncidentResolved'), 10_000);
    expect((resolved.env.data as Incident).timeline.at(-1)?.what).toMatch(/^resolved by cli:.*: cleaned the disk by hand$/);
    const trace = await cli(['trace', opened.id]);
    expect(trace.out).toMatch(/acknowledged by cli:/);
    expect(trace.out).toMatch(/resolved by cli:.*: cleaned the disk by hand/);
    const again = await cli(['resolve', opened.id, '--reason', 'twice']);
    expect(again.code).toBe(1);
    expect(again.err).toMatch(/already resolved/);
    const none = await cli(['ack', 'inc-zzzz']);
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/no incident matches "inc-zzzz"/);
    await stack.api.heal(fault);
  }, 60_000);

  it('silence: add (vmid or node), list, clear by prefix; unknown targets and bad durations refused', async () => {
    const add = await cli(['silence', '159', '2h', '--reason', 'db migration', '--json']);
    expect(add.code, add.err).toBe(0);
    const s = JSON.parse(add.out) as SilenceRecord;
    expect(s).toMatchObject({ vmid: 159, reason: 'db migration' });
    expect(Date.parse(s.until) - Date.now()).toBeGreaterThan(7100_000);
    const node = stack.fleet.nodes[0].name;
    const addNode = await cli(['silence', node, '30m']);
    expect(addNode.code, addNode.err).toBe(0);
    expect(addNode.out).toMatch(new RegExp(`silenced node ${node} until .* \\[sil-`));
    const list = JSON.parse((await cli(['silence', 'list', '--json'])).out) as SilenceRecord[];
    expect(list.map((x) => x.vmid ?? x.node).sort()).toEqual([159, node].sort());
    const human = await cli(['silence', 'list']);
    expect(human.out).toMatch(/db migration/);
    // a unique prefix: ids made in the same millisecond share their first 10 ULID characters (time)
    const clear = await cli(['silence', 'clear', s.id.slice(0, 20)]);
    expect(clear.code, clear.err).toBe(0);
    expect(((JSON.parse((await cli(['silence', 'list', '--json'])).out)) as SilenceRecord[]).map((x) => x.id)).not.toContain(s.id);
    const unknown = await cli(['silence', '999', '1h']);
    expect(unknown.code).toBe(1);
    expect(unknown.err).toMatch(/no guest 999/);
    const bad = await cli(['silence', '159', 'soon']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/expected a duration like 30m/);
  }, 60_000);
});
