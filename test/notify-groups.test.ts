// Grouping in the spirit of Alertmanager (pure model), and the dispatcher on the real KV bucket:
// two replicas and a restart never send one notification twice; a failed delivery is retried
// with backoff and logged with the notifier's name.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kvm } from '@nats-io/kv';
import { Bus } from '../bus/mod.ts';
import { applyOp, opsFor, planFlush, type NotifyGroup, type Op, type Timing } from '../agents/notify/mod.ts';
import { makeEnvelope, type Incident } from '../bus/mod.ts';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { Dispatcher } from '../agents/notify/dispatcher.ts';
import { GroupStore } from '../agents/notify/store.ts';
import { createSender } from '../agents/notify/senders.ts';
import { parseNotifierUrl } from '../fleet/notify-targets.ts';
import { silentLogger, type Logger } from '../core/mod.ts';
import { testBus, until } from './helpers/bus.ts';
import { startHttpReceiver, type HttpReceiver } from './helpers/http-receiver.ts';

const T: Timing = { groupWaitMs: 10_000, groupIntervalMs: 60_000, repeatIntervalMs: 3_600_000, sendResolved: true };
const at = (ms: number) => new Date(ms).toISOString();
const approval = (group: string, id: string, ts = 0): Op => ({
  op: 'upsert', group, item: { key: `approval:${id}`, kind: 'approval', status: 'firing', severity: 'warning', title: `Approval waiting: ${id}`, text: 'start it?', at: at(ts) },
});
const resolve = (group: string, key?: string, ts = 0): Op => ({ op: 'resolve', group, key, resolution: 'approved by ops', at: at(ts) });

/** Apply ops in order at `now`. */
function fold(ops: Op[], now = 0, g?: NotifyGroup): NotifyGroup | undefined {
  for (const op of ops) g = applyOp(g, op, now) ?? g;
  return g;
}

describe('grouping (pure)', () => {
  it('a new group waits group_wait, then one notification carries everything that arrived meanwhile', () => {
    const g = fold([approval('incident:a', 'x1'), approval('incident:a', 'x2', 3000)])!;
    expect(planFlush(g, 9_999, T, ['hook'], 'f')).toBeUndefined();
    const f = planFlush(g, 10_000, T, ['hook'], 'f')!;
    expect(f.sent?.items.map((i) => i.key)).toEqual(['approval:x1', 'approval:x2']);
    expect(f.sent).toMatchObject({ status: 'firing', title: 'Approval waiting: x1 (+1 more)', repeat: false });
    expect(f.group?.outbox[0].pending).toEqual([{ notifier: 'hook', attempts: 0, nextAt: 10_000 }]);
    // nothing new: nothing more until the repeat interval
    expect(planFlush(f.group!, 20_000, T, ['hook'], 'f')).toBeUndefined();
    const again = planFlush({ ...f.group!, outbox: [] }, 10_000 + T.repeatIntervalMs, T, ['hook'], 'f')!;
    expect(again.sent).toMatchObject({ repeat: true, status: 'firing' });
  });

  it('the same event twice changes nothing (no write, no second notification)', () => {
    const g = fold([approval('incident:a', 'x1')])!;
    expect(applyOp(g, approval('incident:a', 'x1'), 5)).toBeUndefined();
  });

  it('a change in a notified group waits group_interval; the resolution is told once, then the group goes', () => {
    const first = planFlush(fold([approval('incident:a', 'x1')])!, 10_000, T, ['hook'], 'f')!.group!;
    const done = { ...first, outbox: [] };
    const resolved = applyOp(done, resolve('incident:a', undefined, 12_000), 12_000)!;
    expect(planFlush(resolved, 69_999, T, ['hook'], 'f')).toBeUndefined();
    const f = planFlush(resolved, 70_000, T, ['hook'], 'f')!;
    expect(f.sent).toMatchObject({ status: 'resolved', title: 'Approval waiting: x1' });
    expect(f.sent!.items[0]).toMatchObject({ status: 'resolved', resolution: 'approved by ops' });
    expect(planFlush({ ...f.group!, outbox: [] }, 70_001, T, ['hook'], 'f')).toEqual({ group: null });
  });

  it('resolved before anyone was told: dropped quietly; sendResolved false: no resolved notification', () => {
    const quiet = fold([approval('incident:b', 'y1'), resolve('incident:b', 'approval:y1', 1000)])!;
    expect(planFlush(quiet, 10_000, T, ['hook'], 'f')).toEqual({ group: null });
    const mixed = fold([approval('incident:c', 'z1'), approval('incident:c', 'z2'), resolve('incident:c', 'approval:z2', 1000)])!;
    expect(planFlush(mixed, 10_000, T, ['hook'], 'f')!.sent!.items.map((i) => i.key)).toEqual(['approval:z1']);
    const told = { ...planFlush(fold([approval('incident:d', 'w1')])!, 10_000, T, ['hook'], 'f')!.group!, outbox: [] };
    const r = planFlush(applyOp(told, resolve('incident:d'), 11_000)!, 80_000, { ...T, sendResolved: false }, ['hook'], 'f')!;
    expect(r.sent).toBeUndefined();
    expect(r.group?.items).toEqual([]);
  });

  it('a one-shot item (a workflow result) is told once: no repeat, no resolved', () => {
    const g = fold([{ op: 'upsert', group: 'workflow:w', item: { key: 'workflow:w', kind: 'workflow', status: 'firing', oneShot: true, severity: 'info', title: 'Failover of node-b done', text: '4 recovered', at: at(0) } }])!;
    const f = planFlush(g, 10_000, T, ['hook'], 'f')!;
    expect(f.sent?.title).toBe('Failover of node-b done');
    expect(f.group?.items).toEqual([]);
    expect(planFlush({ ...f.group!, outbox: [] }, 10_000 + T.repeatIntervalMs, T, ['hook'], 'f')).toEqual({ group: null });
  });
});

describe('which messages need a human (rules)', () => {
  const fleet = referenceFleet();
  const ts = '2026-11-30T23:00:00.000Z';
  const incident = (kind: Incident['kind'], id = `i-${kind}`): Incident => ({
    id, kind, status: 'open', severity: 'critical', title: `${kind} incident`, rootCause: { name: 'homeostat/decision', reason: 'down' },
    symptoms: [], suppressed: [], openedAt: ts, updatedAt: ts, timeline: [],
  });
  const ops = (type: string, data: unknown) => opsFor(makeEnvelope('test', type, data), fleet);

  it('the loop\'s own incident, a flapping guest and the PVE API out of reach go out directly; guest incidents through their decision', () => {
    for (const kind of ['self', 'flapping', 'api'] as const) expect(ops('IncidentOpened', incident(kind)), kind).toEqual([expect.objectContaining({ op: 'upsert', group: `incident:i-${kind}` })]);
    for (const kind of ['guest', 'node'] as const) expect(ops('IncidentOpened', incident(kind)), kind).toEqual([]);
    expect(ops('IncidentResolved', { ...incident('guest'), status: 'resolved' })).toEqual([expect.objectContaining({ op: 'resolve', group: 'incident:i-guest' })]);
    // a notify verdict for an incident already in its group adds nothing
    const g = fold(ops('IncidentOpened', incident('self')));
    const decision = ops('DecisionMade', { incidentId: 'i-self', verb: 'notify', target: {}, proposer: 'runbook', rationale: 'self incident: operator attention needed', verdict: 'notify', reasons: [] });
    expect(decision).toHaveLength(1);
    expect(applyOp(g, decision[0], 1)).toBeUndefined();
    // an allowed action (no approval) means nothing here
    expect(ops('ActionApproved', { actionId: 'a', verb: 'start', target: { vmid: 159, node: 'node-b' }, proposer: 'runbook', requestedBy: 'decision', needsApproval: false, params: {} })).toEqual([]);
  });

  it('a failover\'s end and a chaos result are told once; a boot that went well is not', () => {
    const ended = (kind: string, status: string, output: unknown) => ops('WorkflowEvent', { workflowId: `w-${kind}`, kind, event: 'WORKFLOW.ENDED', detail: { status, output } });
    const [failover] = ended('failover', 'done', { node: 'node-b', aborted: false, recovered: [{ vmid: 159, to: 'node-a' }], failed: [], unplaced: [104], held: [], reasons: {} });
    expect(failover).toMatchObject({ op: 'upsert', group: 'workflow:w-failover', item: { title: 'Failover of node-b done', severity: 'warning', oneShot: true, text: expect.stringMatching(/^1 guests recovered elsewhere, 0 failed, 1 without room/) as unknown } });
    const [chaos] = ended('chaos', 'done', { experiment: 'kill-layer1', passed: true, dryRun: false, faults: [{ kind: 'crash', target: 101, mttrMs: 4200, withinSlo: true }] });
    expect(chaos).toMatchObject({ item: { title: 'Chaos experiment kill-layer1 passed', severity: 'info', text: 'crash on 101: MTTR 4.2 s' } });
    expect(ended('boot', 'done', {})).toEqual([]);
    expect(ended('shutdown', 'failed', {})).toHaveLength(1);
  });
});

describe('dispatcher on the real KV bucket', () => {
  let http: HttpReceiver;
  const buses: Bus[] = [];
  const open: { store: GroupStore; dispatcher: Dispatcher }[] = [];
  beforeAll(async () => {
    http = await startHttpReceiver();
  });
  afterAll(async () => {
    for (const o of open) {
      await o.dispatcher.stop();
      await o.store.stop();
    }
    await Promise.all(buses.map((b) => b.stop()));
    await http.close();
  });

  const hook = () => {
    const r = parseNotifierUrl(`${http.url}/hook?name=hook`);
    if ('error' in r) throw new Error(r.error);
    return createSender(r.target);
  };
  const BUCKET = `notify_groups_test_${process.pid}_${Date.now()}`;
  const replica = async (timing: Timing, log: Logger = silentLogger, senders = [hook()]) => {
    const bus = await testBus('notify-test');
    buses.push(bus);
    // a bucket of this file's own: the suite's other stacks run notify agents on the shared nats-server,
    // and a dispatcher plans every group in its bucket with its own notifiers
    const store = new GroupStore(await new Kvm(bus.nc).create(BUCKET), log);
    await store.start();
    const dispatcher = new Dispatcher({ store, senders, timing, retry: { baseMs: 100, maxMs: 400, attempts: 5 }, fleet: 'test', log, claimMs: 5000 });
    open.push({ store, dispatcher });
    return dispatcher;
  };
  const forGroup = (g: string) => http.requests.filter((r) => (JSON.parse(r.body) as { groupKey: string }).groupKey === g);

  it('two replicas, both told every event and both scanning: one notification; a restart does not repeat it', async () => {
    const timing = { ...T, groupWaitMs: 300, groupIntervalMs: 300 };
    const [a, b] = [await replica(timing), await replica(timing)];
    const group = `incident:replicas-${Date.now()}`;
    const ops = [approval(group, 'r1'), approval(group, 'r2')];
    await Promise.all([a.apply(ops), b.apply(ops)]);
    const scan = setInterval(() => void Promise.all([a.tick(), b.tick()]), 50);
    try {
      await until(() => forGroup(group).length >= 1, 5000);
      await new Promise((r) => setTimeout(r, 800));
      const c = await replica(timing);
      await c.tick();
      await new Promise((r) => setTimeout(r, 300));
      await c.tick();
    } finally {
      clearInterval(scan);
    }
    expect(forGroup(group)).toHaveLength(1);
    const body = JSON.parse(forGroup(group)[0].body) as { items: { key: string }[] };
    expect(body.items.map((i) => i.key)).toEqual(['approval:r1', 'approval:r2']);
  }, 20_000);

  it('level-triggered: a group whose incident closed without its IncidentResolved being seen is resolved', async () => {
    const d = await replica({ ...T, groupWaitMs: 60_000 });
    const store = open.at(-1)!.store;
    const id = `missed-${Date.now()}`;
    await d.apply([approval(`incident:${id}`, 'm1'), approval(`incident:still-open-${id}`, 'm2')]);
    await d.reconcile(async (incident) => incident.startsWith('still-open'));
    const items = (key: string) => store.groups().find(([, g]) => g.key === key)?.[1].items.map((i) => [i.key, i.status, i.resolution]);
    expect(items(`incident:${id}`)).toEqual([['approval:m1', 'resolved', `incident ${id} resolved`]]);
    expect(items(`incident:still-open-${id}`)).toEqual([['approval:m2', 'firing', undefined]]);
  });

  it('a process without the notifier leaves its deliveries to one that has it (no claim, no give-up)', async () => {
    const lines: string[] = [];
    const log: Logger = { ...silentLogger, error: (_o, msg) => void lines.push(String(msg)), warn: (_o, msg) => void lines.push(String(msg)), child: () => log };
    const timing = { ...T, groupWaitMs: 0 };
    const other = await replica(timing, log, []);
    const owner = await replica(timing);
    const group = `incident:foreign-${Date.now()}`;
    await owner.apply([approval(group, 'o1')]);
    // planned for 'hook' (what the owner's tick would do), then the process without 'hook' scans it first
    const store = open.at(-1)!.store;
    await until(() => store.groups().some(([, g]) => g.key === group), 5000);
    const [key] = store.groups().find(([, g]) => g.key === group)!;
    await store.mutate(key, (g) => (g ? planFlush(g, Date.now(), timing, ['hook'], 'test')?.group ?? undefined : undefined));
    for (let i = 0; i < 5; i++) await other.tick();
    await owner.tick();
    await until(() => forGroup(group).length === 1, 5000);
    expect(lines.filter((m) => /given up|failed/.test(m))).toEqual([]);
  }, 20_000);

  it('a failed delivery is retried with backoff and logged with the notifier name, never its URL', async () => {
    const lines: { obj: Record<string, unknown>; msg?: string }[] = [];
    const log: Logger = { ...silentLogger, warn: (obj, msg) => lines.push({ obj: obj as Record<string, unknown>, msg }), info: () => undefined, child: () => log };
    const d = await replica({ ...T, groupWaitMs: 0 }, log);
    const group = `incident:retry-${Date.now()}`;
    http.status = 503;
    await d.apply([approval(group, 'f1')]);
    const scan = setInterval(() => void d.tick(), 50);
    try {
      await until(() => lines.some((l) => l.msg === 'notification delivery failed; will retry'), 5000);
      http.status = 200;
      await until(() => http.requests.some((r) => r.body.includes(group) && forGroup(group).length > 1), 5000);
    } finally {
      clearInterval(scan);
      http.status = 200;
    }
    const failed = lines.find((l) => l.msg === 'notification delivery failed; will retry')!;
    expect(failed.obj).toMatchObject({ notifier: 'hook', err: expect.stringMatching(/^HTTP 503/) as unknown });
    expect(JSON.stringify(lines)).not.toContain(http.url);
    expect(d.notifiers()).toEqual([expect.objectContaining({ name: 'hook', kind: 'webhook', ok: true })]);
  }, 20_000);
});
