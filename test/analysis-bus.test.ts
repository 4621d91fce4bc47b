// The analysis agent on the real nats-server: hand-published events in, alerts/incidents out,
// trace ids, KV, dead letters, desired state from KV, and memory rebuilt after a restart.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Bus, kvGet, kvKeys, kvPut, IncidentRecord, subjects, type Alert, type DeadLetter, type Envelope, type Incident } from '../bus/mod.ts';
import { createLogger } from '../core/mod.ts';
import { loadConfig } from '../agents/mod.ts';
import { agent as analysis, type AnalysisHandle } from '../agents/analysis/mod.ts';
import { isolatedFleet } from './helpers/fleet.ts';


const OFF = 40_000 + (process.pid % 1000) * 10;
const fleet = isolatedFleet(`ab${process.pid}`, OFF);
const V = (v: number) => v + OFF;
const nodeOf = (v: number) => fleet.byVmid.get(V(v))!.node;
let sensing: Bus; // publishes as sensing would
let handle: AnalysisHandle | undefined;
let agentBus: Bus | undefined;
const incidents: Envelope<Incident>[] = [];
const alerts: Envelope<Alert>[] = [];
const dead: Envelope<DeadLetter>[] = [];

async function startAnalysis(): Promise<void> {
  agentBus = await Bus.connect({ servers: inject('natsUrl'), source: 'analysis' });
  handle = (await analysis.start({ name: 'analysis', config: loadConfig({}), log: createLogger('silent'), bus: agentBus, fleet, options: { tickMs: 50 } })) as AnalysisHandle;
}

async function stopAnalysis(): Promise<void> {
  await handle?.stop();
  await agentBus?.stop();
  handle = undefined;
}

function follow<T>(pattern: string, into: Envelope<T>[], keep: (e: Envelope<T>) => boolean): void {
  const sub = sensing.nc.subscribe(pattern);
  void (async () => {
    for await (const m of sub) {
      const env = JSON.parse(new TextDecoder().decode(m.data)) as Envelope<T>;
      if (keep(env)) into.push(env);
    }
  })();
}

async function until<T>(fn: () => T | undefined | false, ms = 8000): Promise<T> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    const v = fn();
    if (v) return v;
  }
  throw new Error('timed out waiting');
}

const guest = (v: number, state: 'running' | 'stopped', health: 'healthy' | 'unhealthy' | 'unknown', type = 'GuestStateChanged') =>
  sensing.publish(subjects.guestEvent(nodeOf(v), V(v)), type, { vmid: V(v), node: nodeOf(v), state, health });

beforeAll(async () => {
  sensing = await Bus.connect({ servers: inject('natsUrl'), source: 'sensing' });
  const mine = (v?: number, n?: string) => (v !== undefined && fleet.byVmid.has(v)) || (n !== undefined && n.startsWith(fleet.name));
  follow<Incident>('fleet.incidents.>', incidents, (e) => mine(e.data.rootCause?.vmid, e.data.rootCause?.node));
  follow<Alert>('fleet.alerts.>', alerts, (e) => e.data.origin === 'analysis' && mine(e.data.vmid, e.data.node));
  follow<DeadLetter>('fleet.dlq.>', dead, (e) => e.data.subject.includes(fleet.name));
  await startAnalysis();
  for (const g of fleet.guests) await sensing.publish(subjects.guestEvent(g.node, g.vmid), 'GuestDiscovered', { vmid: g.vmid, node: g.node, state: 'running', health: 'healthy' });
});

afterAll(async () => {
  const durables = handle?.durables ?? [];
  await stopAnalysis();
  for (const d of durables) await sensing.jsm.consumers.delete('FLEET', d).catch(() => undefined);
  await sensing.stop();
});

describe('analysis agent over NATS', () => {
  it('crash event → GuestDown alert and IncidentOpened, with causation and one correlation id, stored in KV', async () => {
    const ev = await guest(102, 'stopped', 'unknown');
    const opened = await until(() => incidents.find((e) => e.type === 'IncidentOpened' && e.data.rootCause.vmid === V(102)));
    expect(opened.data).toMatchObject({ kind: 'guest', rootCause: { reason: 'crashed', alert: 'GuestDown' } });
    expect(opened.causationId).toBe(ev.id);
    expect(opened.correlationId).toBe(opened.data.id);
    const alert = await until(() => alerts.find((e) => e.data.name === 'GuestDown' && e.data.vmid === V(102)));
    expect(alert).toMatchObject({ type: 'AlertFired', causationId: ev.id, correlationId: opened.data.id });
    const stored = await kvGet(sensing.kv.incidents, kvKeys.incident(opened.data.id), IncidentRecord);
    expect(stored?.value.status).toBe('open');
  });

  it('an Alertmanager alert comes in through the alerts durable (analysis passes over its own alerts there, undecoded)', async () => {
    await sensing.publish(subjects.alert('BackupFailed'), 'AlertFired', {
      name: 'BackupFailed', status: 'firing', severity: 'warning', fingerprint: `bf-${fleet.name}`, summary: 'backup failed', startsAt: new Date().toISOString(), origin: 'alertmanager', vmid: V(124), labels: { homeostat_fleet: fleet.name },
    });
    const opened = await until(() => incidents.find((e) => e.type === 'IncidentOpened' && e.data.kind === 'external' && e.data.rootCause.vmid === V(124)));
    expect(opened.data.rootCause).toMatchObject({ alert: 'BackupFailed' });
    // analysis' own alerts on the same durable are acked (and counted) like the rest
    const durable = handle!.durables[1];
    await until(() => (agentBus!.durables.get(durable)?.acked ?? 0) >= alerts.length + 1);
  });

  it('malformed events go to the DLQ and analysis keeps going', async () => {
    const subject = subjects.guestEvent(nodeOf(120), V(120));
    sensing.nc.publish(subject, new TextEncoder().encode('{not json'));
    sensing.nc.publish(subject, new TextEncoder().encode(JSON.stringify({ id: 'x', ts: new Date().toISOString(), source: 's', type: 'Bogus', correlationId: 'x', data: {} })));
    await until(() => dead.filter((d) => d.data.receivedBy === 'analysis').length >= 2);
    expect(dead.map((d) => d.data.reason).join('|')).toMatch(/malformed JSON/);
    await guest(120, 'running', 'unhealthy', 'GuestProbe');
    await until(() => incidents.find((e) => e.type === 'IncidentOpened' && e.data.rootCause.vmid === V(120)));
  });

  it('desired state "stopped" in KV: a shutdown is no incident', async () => {
    await kvPut(sensing.kv.fleetState, kvKeys.desired(V(104)), { state: 'stopped', maintenance: false, by: 'operator', reason: 'test', at: new Date().toISOString() });
    await until(() => handle!.analyzer.view.desired.get(V(104))?.state === 'stopped');
    await guest(104, 'stopped', 'unknown');
    await guest(100, 'stopped', 'unknown'); // a marker after it: once this one is seen, 104 was judged
    await until(() => incidents.find((e) => e.data.rootCause.vmid === V(100)));
    expect(incidents.find((e) => e.data.rootCause.vmid === V(104))).toBeUndefined();
    expect(alerts.find((e) => e.data.vmid === V(104))).toBeUndefined();
  });

  it('after a restart, memory comes back from KV and the durable consumer: the same incident resolves', async () => {
    const open = incidents.find((e) => e.type === 'IncidentOpened' && e.data.rootCause.vmid === V(102))!.data.id;
    await stopAnalysis();
    await guest(102, 'running', 'healthy'); // published while analysis is down
    await startAnalysis();
    const resolved = await until(() => incidents.find((e) => e.type === 'IncidentResolved' && e.data.id === open));
    expect(resolved.data.status).toBe('resolved');
    expect(incidents.filter((e) => e.type === 'IncidentOpened' && e.data.rootCause.vmid === V(102))).toHaveLength(1);
  });
});
