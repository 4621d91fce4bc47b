// The analysis rules without I/O: reports in, alerts and incident messages out, on a fake clock.
import { describe, expect, it } from 'vitest';
import { decode, IncidentRecord, makeEnvelope, type Alert, type GuestEvent, type Incident, type NodeEvent } from '../bus/mod.ts';
import { Analyzer, tuningFor, type Output } from '../agents/analysis/mod.ts';
import { encodeOutput } from '../agents/analysis/outbox.ts';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { buildFleet } from '../fleet/manifest.ts';

type Partial = Omit<GuestEvent, 'vmid' | 'node'>;

function setup(policies: Record<string, unknown> = {}, tuned: { bootGraceMs?: number } = {}) {
  const base = referenceFleet();
  const fleet = buildFleet({ name: base.name, nodes: base.nodes, guests: base.guests, policies: { senseIntervalMs: 200, ...policies } });
  let now = Date.parse('2025-01-01T00:00:00Z');
  const tuning = tuningFor(fleet, { groupWindowMs: 1500, symptomGraceMs: 3000, bootGraceMs: 10_000, ...tuned });
  const a = new Analyzer(fleet, tuning, () => now);
  // The outbox publishes the analyzer's outputs without a zod pass of its own: every output of
  // every test here must decode as its receivers decode it (stream message and KV record).
  const step = a.step.bind(a);
  a.step = (causationId, fn) => {
    const out = step(causationId, fn);
    for (const o of out) {
      const m = encodeOutput('analysis', o);
      const r = decode(m.subject, m.bytes);
      if (!r.ok) throw new Error(`analysis built an invalid message on ${m.subject}: ${r.reason}`);
      expect(r.env.data).toEqual(o.kind === 'alert' ? o.alert : o.incident);
      if (m.kv) expect(IncidentRecord.parse(JSON.parse(Buffer.from(m.kv.bytes).toString('utf8')))).toEqual(o.kind === 'incident' && o.incident);
    }
    return out;
  };
  const ts = () => new Date(now).toISOString();
  const guest = (vmid: number, data: Partial, type = 'GuestStateChanged') => {
    const node = fleet.byVmid.get(vmid)!.node;
    return a.onGuestEvent(makeEnvelope('sensing', type, { vmid, node, ...data }, { ts: ts() }));
  };
  const node = (name: string, data: Omit<NodeEvent, 'node'>, type: string) => a.onNodeEvent(makeEnvelope('sensing', type, { node: name, ...data }, { ts: ts() }));
  const allHealthy = () => {
    for (const g of fleet.guests) guest(g.vmid, { state: 'running', health: 'healthy' }, 'GuestDiscovered');
    for (const n of fleet.nodes) node(n.name, { status: 'online', reachable: true }, 'NodeDiscovered');
  };
  return { fleet, a, guest, node, allHealthy, advance: (ms: number) => (now += ms), ts };
}

const incidents = (out: Output[], phase?: string) => out.filter((o) => o.kind === 'incident' && (!phase || o.phase === phase)).map((o) => (o as { incident: Incident }).incident);
const alerts = (out: Output[]) => out.filter((o) => o.kind === 'alert').map((o) => (o as { alert: Alert }).alert);

describe('analysis rules', () => {
  it('a healthy fleet makes no noise', () => {
    const t = setup();
    t.allHealthy();
    expect(t.a.book.open.size).toBe(0);
    expect(t.a.failing.size).toBe(0);
  });

  it('crash → GuestDown + one guest incident (reason crashed); healthy again → resolved', () => {
    const t = setup();
    t.allHealthy();
    const out = t.guest(101, { state: 'stopped', previousState: 'running', health: 'unknown' });
    expect(alerts(out)).toMatchObject([{ name: 'GuestDown', status: 'firing', vmid: 101, origin: 'analysis' }]);
    const [inc] = incidents(out, 'opened');
    expect(inc).toMatchObject({ kind: 'guest', status: 'open', rootCause: { vmid: 101, reason: 'crashed', alert: 'GuestDown' } });
    const opened = out.find((o) => o.kind === 'incident')!;
    expect(opened.causationId).toBeDefined();
    expect(opened.correlationId).toBe(inc.id);
    expect(out.find((o) => o.kind === 'alert')!.correlationId).toBe(inc.id);
    // booting: running but not yet healthy keeps it open, with the same reason
    expect(incidents(t.guest(101, { state: 'running', health: 'unknown' }), 'resolved')).toHaveLength(0);
    const done = t.guest(101, { state: 'running', health: 'healthy' }, 'GuestProbe');
    expect(incidents(done, 'resolved')).toMatchObject([{ id: inc.id, status: 'resolved' }]);
    expect(alerts([...done])).toHaveLength(0); // GuestDown resolved when it started running
    expect(t.a.book.open.size).toBe(0);
  });

  it('hang → HealthCheckFailed → incident with reason unhealthy', () => {
    const t = setup();
    t.allHealthy();
    const out = t.guest(243, { state: 'running', health: 'unhealthy' }, 'GuestProbe');
    expect(alerts(out).map((x) => x.name)).toEqual(['HealthCheckFailed']);
    expect(incidents(out, 'opened')).toMatchObject([{ rootCause: { vmid: 243, reason: 'unhealthy', alert: 'HealthCheckFailed' } }]);
  });

  it('layer-1 crash with unhealthy dependents → ONE incident, root 101, the rest symptoms', () => {
    const t = setup();
    t.allHealthy();
    const all: Output[] = [];
    all.push(...t.guest(101, { state: 'stopped', health: 'unknown' }));
    for (const v of [159, 155, 124]) all.push(...t.guest(v, { state: 'running', health: 'unhealthy' }, 'GuestProbe'));
    const opened = incidents(all, 'opened');
    expect(opened).toHaveLength(1);
    const inc = t.a.book.open.get(opened[0].id)!;
    expect(inc.rootCause.vmid).toBe(101);
    expect(inc.symptoms.map((s) => s.vmid).sort()).toEqual([124, 155, 159]);
    // transitive: 289 depends on 159 which depends on 101
    expect(incidents(t.guest(289, { state: 'running', health: 'unhealthy' }, 'GuestProbe'), 'opened')).toHaveLength(0);
    expect(t.a.book.symptomOf.get(289)).toBe(inc.id);
    // root back, symptoms recover → resolved
    t.guest(101, { state: 'running', health: 'healthy' });
    expect(t.a.book.open.has(inc.id)).toBe(true);
    t.guest(159, { state: 'running', health: 'healthy' }, 'GuestProbe');
    expect(inc.symptoms.map((s) => s.vmid)).not.toContain(159); // current symptoms only; the timeline keeps the history
    expect(inc.timeline.some((e) => e.what.includes('recovered') && e.ref === 'vmid:159')).toBe(true);
    for (const v of [155, 124, 289]) t.guest(v, { state: 'running', health: 'healthy' }, 'GuestProbe');
    expect(t.a.book.open.size).toBe(0);
  });

  it('an incident message is a snapshot: later steps change the book, not what was handed out', () => {
    const t = setup();
    t.allHealthy();
    const [opened] = incidents(t.guest(101, { state: 'stopped', health: 'unknown' }), 'opened');
    const sent = JSON.stringify(opened);
    t.advance(100);
    const updated = incidents(t.guest(159, { state: 'running', health: 'unhealthy' }, 'GuestProbe'), 'updated');
    expect(updated).toHaveLength(1);
    t.a.acknowledge(opened.id, 'alice', 'on it');
    const live = t.a.book.open.get(opened.id)!;
    expect(live.symptoms.map((s) => s.vmid)).toEqual([159]);
    expect(live.acknowledged?.by).toBe('alice');
    expect(JSON.stringify(opened)).toBe(sent);
    expect(updated[0].symptoms.map((s) => s.vmid)).toEqual([159]);
    expect(updated[0].acknowledged).toBeUndefined();
    live.symptoms[0].reason = 'changed in place';
    live.rootCause.reason = 'changed in place';
    live.timeline[0].what = 'changed in place';
    expect(updated[0].symptoms[0].reason).not.toBe('changed in place');
    expect(updated[0].rootCause.reason).not.toBe('changed in place');
    expect(updated[0].timeline[0].what).not.toBe('changed in place');
  });

  it('a symptom noticed first is folded into the root cause incident within the window', () => {
    const t = setup();
    t.allHealthy();
    const first = incidents(t.guest(159, { state: 'running', health: 'unhealthy' }, 'GuestProbe'), 'opened')[0];
    t.advance(500);
    const out = t.guest(101, { state: 'stopped', health: 'unknown' });
    const root = incidents(out, 'opened')[0];
    expect(root.rootCause.vmid).toBe(101);
    expect(root.symptoms.map((s) => s.vmid)).toEqual([159]);
    const folded = incidents(out, 'resolved')[0];
    expect(folded.id).toBe(first.id);
    expect(folded.timeline.at(-1)).toMatchObject({ ref: `folded:${root.id}` });
    expect([...t.a.book.open.keys()]).toEqual([root.id]);
  });

  it('outside the window an older incident stays its own', () => {
    const t = setup();
    t.allHealthy();
    t.guest(159, { state: 'running', health: 'unhealthy' }, 'GuestProbe');
    t.advance(5000);
    const out = t.guest(101, { state: 'stopped', health: 'unknown' });
    expect(incidents(out, 'resolved')).toHaveLength(0);
    expect(t.a.book.open.size).toBe(2);
  });

  it('node unreachable → one node incident at once, its guests suppressed, dependents elsewhere are symptoms; NodeDown after the hold', () => {
    const t = setup({ alerts: { nodeDownMs: 60_000 } });
    t.allHealthy();
    const out = t.node('node-c', { status: 'online', reachable: false, reason: 'HOMEOSTAT_ERR_PVE_UNAVAILABLE' }, 'NodeUnreachable');
    const [inc] = incidents(out, 'opened');
    expect(inc).toMatchObject({ kind: 'node', rootCause: { node: 'node-c', reason: 'unreachable', alert: 'NodeDown' } });
    expect(inc.suppressed.map((s) => s.vmid).sort((x, y) => x - y)).toEqual([101, 102, 122, 200]);
    const more: Output[] = [];
    for (const v of [101, 102, 122, 200]) more.push(...t.guest(v, { state: 'unknown', health: 'unknown', reason: 'node node-c unreachable' }));
    more.push(...t.guest(159, { state: 'running', health: 'unhealthy' }, 'GuestProbe'));
    expect(incidents(more, 'opened')).toHaveLength(0);
    expect(t.a.book.symptomOf.get(159)).toBe(inc.id);
    expect(alerts(t.a.tick())).toHaveLength(0);
    t.advance(60_000);
    expect(alerts(t.a.tick())).toMatchObject([{ name: 'NodeDown', status: 'firing', node: 'node-c' }]);
    const back = t.node('node-c', { status: 'online', reachable: true }, 'NodeReachable');
    expect(incidents(back, 'resolved').map((i) => i.id)).toContain(inc.id);
    expect(alerts(back)).toMatchObject([{ name: 'NodeDown', status: 'resolved' }]);
  });

  it('a guest incident on a node that then goes down is folded into the node incident', () => {
    const t = setup();
    t.allHealthy();
    const g = incidents(t.guest(102, { state: 'stopped', health: 'unknown' }), 'opened')[0];
    const out = t.node('node-c', { status: 'offline', reachable: false }, 'NodeUnreachable');
    expect(incidents(out, 'resolved').map((i) => i.id)).toEqual([g.id]);
    expect(t.a.book.open.size).toBe(1);
  });

  it('desired state stopped: a shutdown is not an incident; a running incident resolves when desired turns stopped', () => {
    const t = setup();
    t.allHealthy();
    t.a.onDesired(104, { state: 'stopped', maintenance: false, by: 'operator', reason: 'test', at: t.ts() });
    const out = t.guest(104, { state: 'stopped', health: 'unknown' });
    expect(out).toHaveLength(0);
    t.guest(100, { state: 'stopped', health: 'unknown' });
    expect(t.a.book.rootOf.has(100)).toBe(true);
    const res = t.a.onDesired(100, { state: 'running', maintenance: true, by: 'operator', reason: 'maint', at: t.ts() });
    expect(incidents(res, 'resolved')).toHaveLength(1);
    expect(alerts(res)).toMatchObject([{ name: 'GuestDown', status: 'resolved' }]);
  });

  it('PVE API outage → one api incident; back → resolved', () => {
    const t = setup();
    const down = t.a.onApiEvent(makeEnvelope('sensing', 'PveUnavailable', { available: false, code: 'HOMEOSTAT_ERR_PVE_UNAVAILABLE' }));
    expect(incidents(down, 'opened')).toMatchObject([{ kind: 'api', rootCause: { alert: 'PveUnavailable' } }]);
    expect(incidents(t.a.onApiEvent(makeEnvelope('sensing', 'PveUnavailable', { available: false })))).toHaveLength(0);
    expect(incidents(t.a.onApiEvent(makeEnvelope('sensing', 'PveAvailable', { available: true })), 'resolved')).toHaveLength(1);
  });

  it('resources: DiskFull at once, HighCPU only after the hold, both notify-only resource incidents', () => {
    const t = setup({ alerts: { pressureHoldMs: 300_000 } });
    t.allHealthy();
    const disk = t.a.onMetric({ node: 'node-b', vmid: 120, cpu: 0.1, mem: 1, maxmem: 10, disk: 95, maxdisk: 100 });
    expect(alerts(disk).map((x) => x.name)).toEqual(['DiskFull']);
    expect(incidents(disk, 'opened')).toMatchObject([{ kind: 'resource', rootCause: { vmid: 120, alert: 'DiskFull' } }]);
    expect(alerts(t.a.onMetric({ node: 'node-b', vmid: 120, cpu: 0.95, mem: 1, maxmem: 10, disk: 95, maxdisk: 100 }))).toHaveLength(0);
    t.advance(300_000);
    const cpu = t.a.onMetric({ node: 'node-b', vmid: 120, cpu: 0.95, mem: 1, maxmem: 10, disk: 10, maxdisk: 100 });
    expect(alerts(cpu).map((x) => `${x.name}:${x.status}`).sort()).toEqual(['DiskFull:resolved', 'HighCPU:firing']);
    expect(incidents(cpu, 'resolved')).toHaveLength(1);
    expect(incidents(cpu, 'opened')).toMatchObject([{ rootCause: { alert: 'HighCPU' } }]);
  });

  it('cert expiring from a probe report', () => {
    const t = setup();
    t.allHealthy();
    const out = t.guest(122, { state: 'running', health: 'healthy', certDaysLeft: 3 }, 'GuestResources');
    expect(alerts(out)).toMatchObject([{ name: 'CertExpiring', vmid: 122 }]);
    expect(incidents(out, 'opened')).toMatchObject([{ kind: 'resource', rootCause: { reason: 'cert-expiring' } }]);
  });

  it('symptoms still failing after the root recovered get incidents of their own after the grace period', () => {
    const t = setup();
    t.allHealthy();
    t.guest(101, { state: 'stopped', health: 'unknown' });
    t.guest(159, { state: 'running', health: 'unhealthy' }, 'GuestProbe');
    t.guest(101, { state: 'running', health: 'healthy' });
    expect(incidents(t.a.tick())).toHaveLength(0);
    t.advance(3000);
    const out = t.a.tick();
    expect(incidents(out, 'resolved')).toHaveLength(1);
    expect(incidents(out, 'opened')).toMatchObject([{ rootCause: { vmid: 159, reason: 'unhealthy' } }]);
  });

  it('a restarted guest still failing health checks after the boot grace turns the incident to unhealthy', () => {
    const t = setup();
    t.allHealthy();
    const inc = incidents(t.guest(200, { state: 'stopped', health: 'unknown' }), 'opened')[0];
    t.guest(200, { state: 'running', health: 'unhealthy' });
    expect(t.a.book.open.get(inc.id)!.rootCause.reason).toBe('crashed');
    t.advance(10_000);
    const out = t.a.tick();
    expect(incidents(out, 'updated')).toMatchObject([{ id: inc.id, rootCause: { reason: 'unhealthy', alert: 'HealthCheckFailed' } }]);
  });

  it('an incident turned unhealthy after the boot grace is folded, while young, into its dependency\'s new incident', () => {
    // analysis looks for incidents to fold only among open unhealthy ones (an index): the turn
    // from crashed to unhealthy must put the incident there
    const t = setup({}, { bootGraceMs: 500 });
    t.allHealthy();
    const own = incidents(t.guest(159, { state: 'stopped', health: 'unknown' }), 'opened')[0];
    t.guest(159, { state: 'running', health: 'unhealthy' });
    t.advance(500);
    expect(incidents(t.a.tick(), 'updated')).toMatchObject([{ id: own.id, rootCause: { reason: 'unhealthy' } }]);
    t.advance(200);
    const out = t.guest(101, { state: 'stopped', health: 'unknown' });
    const root = incidents(out, 'opened')[0];
    expect(root.rootCause.vmid).toBe(101);
    expect(root.symptoms.map((s) => s.vmid)).toEqual([159]);
    expect(incidents(out, 'resolved')).toMatchObject([{ id: own.id }]);
    expect([...t.a.book.open.keys()]).toEqual([root.id]);
    expect(t.a.book.unhealthyRoots.size).toBe(0);
  });

  it('external alerts: one incident per fingerprint, other fleets ignored', () => {
    const t = setup();
    const a = (status: 'firing' | 'resolved', fleet = t.fleet.name) =>
      makeEnvelope('sensing', status === 'firing' ? 'AlertFired' : 'AlertResolved', {
        name: 'BackupFailed', status, severity: 'warning' as const, fingerprint: 'abc', summary: 'backup failed', startsAt: t.ts(), origin: 'alertmanager' as const, vmid: 159, labels: { homeostat_fleet: fleet },
      });
    expect(incidents(t.a.onExternalAlert(a('firing', 'other')))).toHaveLength(0);
    expect(incidents(t.a.onExternalAlert(a('firing')), 'opened')).toMatchObject([{ kind: 'external', rootCause: { vmid: 159, alert: 'BackupFailed' } }]);
    expect(incidents(t.a.onExternalAlert(a('firing')))).toHaveLength(0);
    expect(incidents(t.a.onExternalAlert(a('resolved')), 'resolved')).toHaveLength(1);
  });

  it('stale replays (older than what is known) are ignored', () => {
    const t = setup();
    t.allHealthy();
    const old = makeEnvelope('sensing', 'GuestStateChanged', { vmid: 101, node: 'node-c', state: 'stopped' as const, health: 'unknown' as const }, { ts: new Date(Date.parse(t.ts()) - 1000).toISOString() });
    expect(t.a.onGuestEvent(old)).toHaveLength(0);
  });

  it('a guest a workflow hands back is judged on the next sensing report, not the stale one', () => {
    const t = setup();
    t.allHealthy();
    // a boot workflow takes 155 over while it is stopped…
    t.a.onDesired(155, { state: 'running', maintenance: true, by: 'workflow:boot-1', reason: 'layered boot', at: t.ts() });
    t.advance(10);
    expect(incidents(t.guest(155, { state: 'stopped', previousState: 'running', health: 'unknown' }), 'opened')).toHaveLength(0);
    // …sees it healthy before sensing does, and hands it back
    t.advance(100);
    expect(incidents(t.a.onDesired(155, { state: 'running', maintenance: false, by: 'workflow:boot-1', reason: 'layered boot', at: t.ts() }), 'opened')).toHaveLength(0);
    expect(incidents(t.a.tick(), 'opened')).toHaveLength(0);
    t.advance(50);
    expect(incidents(t.guest(155, { state: 'running', previousState: 'stopped', health: 'healthy' }), 'opened')).toHaveLength(0);
    t.advance(10_000);
    expect(incidents(t.a.tick(), 'opened')).toHaveLength(0);
    expect(t.a.book.open.size).toBe(0);
  });

  it('…and when no newer report comes, the stale state stands after the grace', () => {
    const t = setup();
    t.allHealthy();
    t.a.onDesired(124, { state: 'running', maintenance: true, by: 'workflow:boot-2', reason: 'layered boot', at: t.ts() });
    t.advance(10);
    t.guest(124, { state: 'stopped', previousState: 'running', health: 'unknown' });
    t.advance(100);
    t.a.onDesired(124, { state: 'running', maintenance: false, by: 'workflow:boot-2', reason: 'gave up', at: t.ts() });
    expect(incidents(t.a.tick(), 'opened')).toHaveLength(0);
    t.advance(t.a.tuning.evidenceGraceMs + 1);
    expect(incidents(t.a.tick(), 'opened')).toMatchObject([{ rootCause: { vmid: 124, reason: 'crashed' } }]);
  });
});
