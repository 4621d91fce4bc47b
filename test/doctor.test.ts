// The self-check of the loop: heartbeats, `homeostat doctor`, AgentStalled, and homeostat's own
// incidents — on a real nats-server, a full stack on the twin, the CLI as the compiled binary.
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Bus, HeartbeatRecord, kvList, makeEnvelope, replayStored, type AgentEvent, type HeartbeatRecord as Beat, type Incident } from '../bus/mod.ts';
import { createLogger } from '../core/mod.ts';
import { AGENT_NAMES, startHeartbeat } from '../agents/mod.ts';
import { Analyzer, tuningFor } from '../agents/analysis/mod.ts';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';
import { runCli } from './helpers/cli.ts';
import type { SelfCheck } from '../cli/self-check.ts';

const cli = (args: string[], natsUrl: string) => runCli(args, { NATS_URL: natsUrl, HOMEOSTAT_DATA_DIR: '/nonexistent' });

describe('self rules (no I/O)', () => {
  it('an agent whose heartbeat stops is an incident after agentDownMs; back → resolved; AgentStalled/Recovered likewise', () => {
    const fleet = referenceFleet();
    let now = Date.parse('2025-01-01T00:00:00Z');
    const a = new Analyzer(fleet, tuningFor(fleet, { agentDownMs: 1000 }), () => now);
    const beat = (status: Beat['status']): [string, Beat] => ['action.x', HeartbeatRecord.parse({ agent: 'action', fleet: fleet.name, instance: 'x', pid: 1, host: 'h', status, startedAt: new Date(0).toISOString(), at: new Date(now).toISOString(), intervalMs: 100 })];
    const opened = (out: ReturnType<Analyzer['onHeartbeats']>) => out.filter((o) => o.kind === 'incident' && o.phase === 'opened').map((o) => (o as { incident: Incident }).incident);
    expect(opened(a.onHeartbeats([beat('running')]))).toEqual([]);
    now += 1500;
    expect(opened(a.onHeartbeats([beat('running')]))).toEqual([]); // alive: the record moved
    const last = beat('stopped');
    now += 500;
    expect(opened(a.onHeartbeats([last]))).toEqual([]); // stopped, but not for long
    now += 1200;
    const inc = opened(a.onHeartbeats([last]));
    expect(inc).toMatchObject([{ kind: 'self', severity: 'critical', rootCause: { name: 'homeostat/action', reason: 'down' } }]);
    expect(inc[0].title).toMatch(/^homeostat: action agent down .*approved actions cannot run/);
    now += 100;
    const back = a.onHeartbeats([beat('running')]);
    expect(back.filter((o) => o.kind === 'incident' && o.phase === 'resolved')).toHaveLength(1);

    const ev = (type: string, kind: AgentEvent['kind']) => a.onAgentEvent(makeEnvelope('decision', type, { agent: 'decision', instance: 'y', kind, reason: 'consumer decision-incidents: 3 message(s) waiting', since: new Date(now).toISOString() }));
    expect(opened(ev('AgentStalled', 'pve'))).toEqual([]); // the api incident says that one
    expect(opened(ev('AgentStalled', 'consumer'))[0].title).toMatch(/^homeostat: decision stalled: consumer decision-incidents/);
    expect(ev('AgentRecovered', 'consumer').filter((o) => o.kind === 'incident' && o.phase === 'resolved')).toHaveLength(1);
  });
});

describe('a consumer that stops making progress', () => {
  it('says so on the bus (AgentStalled) and in its heartbeat, and AgentRecovered when it moves again', async () => {
    const bus = await Bus.connect({ servers: inject('natsUrl'), source: 'stall-test' });
    const durable = `stall-test-${Date.now()}`;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const stalledSeen: AgentEvent[] = [];
    const sub = bus.subscribe<AgentEvent>('fleet.events.agent.stalltest', (env) => void stalledSeen.push({ ...env.data, reason: `${env.type}: ${env.data.reason}` }));
    const consumer = await bus.consume({ durable, filter: 'fleet.events.node.stall-node', handler: () => gate });
    const hb = startHeartbeat({ bus, agent: 'stalltest', fleet: 'stall', log: createLogger('silent'), heartbeatMs: 100, stallMs: 600 });
    try {
      for (let i = 0; i < 3; i++) await bus.publish('fleet.events.node.stall-node', 'NodeUp', { node: 'stall-node', status: 'online', reachable: true });
      const stalled = await until(() => stalledSeen.find((e) => e.reason.startsWith('AgentStalled')), 10_000);
      expect(stalled).toMatchObject({ agent: 'stalltest', kind: 'consumer' });
      expect(stalled.reason).toMatch(new RegExp(`consumer ${durable}: \\d+ message\\(s\\) waiting, none handled for`));
      const rec = (await kvList(bus.kv.agents, 'stalltest.', HeartbeatRecord)).get(`stalltest.${hb.instance}`);
      expect(rec?.stalled?.kind).toBe('consumer');
      release();
      await until(() => stalledSeen.find((e) => e.reason.startsWith('AgentRecovered')), 10_000);
      await hb.stop();
      expect((await kvList(bus.kv.agents, 'stalltest.', HeartbeatRecord)).get(`stalltest.${hb.instance}`)?.status).toBe('stopped');
    } finally {
      release();
      await hb.stop();
      await consumer.stop();
      await sub.stop();
      await bus.jsm.consumers.delete('FLEET', durable).catch(() => undefined);
      await bus.stop();
    }
  }, 60_000); // each wait is bounded (10 s) above; connecting and publishing on a loaded 2-core machine took the rest
});

describe('homeostat doctor on a stack', () => {
  let stack: TestStack;
  beforeAll(async () => {
    stack = await testStack({ source: 'doctor', options: { heartbeat: { heartbeatMs: 300, stallMs: 3000 }, analysis: { agentDownMs: 2000, heartbeatCheckMs: 200 } } });
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });
  const doctor = async () => {
    const r = await cli(['doctor', '--json'], stack.natsUrl);
    return { ...r, report: JSON.parse(r.out) as SelfCheck };
  };
  const check = (r: SelfCheck, name: string) => r.checks.find((c) => c.name === name)!;
  const selfIncidents = async (since: Date) => (await replayStored(stack.bus, 'fleet.incidents.>', since)).map((e) => ({ type: e.env.type, inc: e.env.data as Incident })).filter((e) => e.inc.kind === 'self' || e.inc.kind === 'api');

  it('a healthy stack: all green, exit 0; status carries the one-line summary', async () => {
    const r = await until(async () => {
      const d = await doctor();
      return d.code === 0 ? d : undefined;
    }, 15_000);
    for (const a of AGENT_NAMES) expect(check(r.report, `agent ${a}`).status, a).toBe('ok');
    expect(check(r.report, 'sensing poll').status).toBe('ok');
    expect(check(r.report, 'pve api').status).toBe('ok');
    expect(check(r.report, 'dead letters').summary).toMatch(/^\d+ dead letter\(s\) in the last hour/);
    expect(check(r.report, 'consumer lag').data).toEqual(expect.arrayContaining([expect.objectContaining({ durable: expect.stringMatching(/^analysis-/) })]));
    expect(check(r.report, 'clock skew').status).toBe('ok');
    expect(check(r.report, 'notifiers').summary).toMatch(/^notifiers: none configured/);
    const human = await cli(['doctor'], stack.natsUrl);
    expect(human.out).toMatch(/✓ action: alive/);
    expect(human.out).toMatch(/all good/);
    const status = await cli(['status'], stack.natsUrl);
    expect(status.code, status.err).toBe(0);
    expect(status.out).toMatch(new RegExp(`self-check: ok — ${AGENT_NAMES.length}/${AGENT_NAMES.length} agents alive, last sensing poll`));
    const help = await cli(['doctor', '--help'], stack.natsUrl);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/clock skew/);
  }, 60_000);

  it('an agent stopped: doctor names it (exit 1), the self-incident opens; started again: it closes', async () => {
    const t0 = new Date();
    await stack.stopAgent('action');
    const down = await until(async () => {
      const d = await doctor();
      return d.code === 1 && check(d.report, 'agent action').status === 'fail' ? d : undefined;
    }, 15_000);
    expect(check(down.report, 'agent action').summary).toMatch(/action: down \(stopped .* ago\)/);
    const opened = await until(async () => (await selfIncidents(t0)).find((e) => e.type === 'IncidentOpened' && e.inc.rootCause.name === 'homeostat/action'), 15_000);
    expect(opened.inc.title).toMatch(/^homeostat: action agent down .*approved actions cannot run/);
    const status = await cli(['status'], stack.natsUrl);
    expect(status.out).toMatch(/self-check: \d+ problem\(s\): action: down/);
    await stack.startAgent('action');
    await until(async () => (await selfIncidents(t0)).find((e) => e.type === 'IncidentResolved' && e.inc.id === opened.inc.id), 15_000);
    await until(async () => (await doctor()).code === 0, 15_000);
  }, 60_000);

  it('PVE API failing: doctor reports it, "homeostat: sensing cannot reach the PVE API" opens, sensing says it is stalled; healed: all closes', async () => {
    const t0 = new Date();
    const { id } = await stack.api.fault('api-error', '*');
    const bad = await until(async () => {
      const d = await doctor();
      return check(d.report, 'pve api').status === 'fail' ? d : undefined;
    }, 15_000);
    expect(bad.code).toBe(1);
    expect(check(bad.report, 'pve api').summary).toMatch(/PVE API unreachable since .*500/);
    const opened = await until(async () => (await selfIncidents(t0)).find((e) => e.type === 'IncidentOpened' && e.inc.kind === 'api'), 15_000);
    expect(opened.inc.title).toMatch(/^homeostat: sensing cannot reach the PVE API/);
    const stalled = await until(async () => (await replayStored(stack.bus, 'fleet.events.agent.>', t0)).find((e) => e.env.type === 'AgentStalled'), 15_000);
    expect(stalled.env.data).toMatchObject({ agent: 'sensing', kind: 'pve' });
    await stack.api.heal(id);
    await until(async () => (await selfIncidents(t0)).find((e) => e.type === 'IncidentResolved' && e.inc.id === opened.inc.id), 15_000);
    await until(async () => (await replayStored(stack.bus, 'fleet.events.agent.>', t0)).find((e) => e.env.type === 'AgentRecovered'), 15_000);
    await until(async () => (await doctor()).code === 0, 15_000);
  }, 60_000);
});
