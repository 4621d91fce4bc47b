// Decision + action agents against the simulator over HTTP, on their own nats-server. Incidents
// are published by the test (as analysis would), so each rule is driven on purpose.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../core/mod.ts';
import { Bus, kvKeys, newSigner, signApproval, subjects, type Action, type Decision, type Envelope, type Incident } from '../bus/mod.ts';
import type { AdvisorResult } from '../llm/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';

type Seen = { subject: string; env: Envelope<any> };

class Recorder {
  readonly seen: Seen[] = [];
  constructor(bus: Bus) {
    for (const p of ['fleet.actions.>', 'fleet.decisions.>', 'fleet.incidents.>']) {
      bus.nc.subscribe(p, {
        callback: (_e, m) => {
          this.seen.push({ subject: m.subject, env: JSON.parse(new TextDecoder().decode(m.data)) });
        },
      });
    }
  }
  actions(type: string, pred: (a: Action) => boolean = () => true): Action[] {
    return this.seen.filter((s) => s.env.type === type && pred(s.env.data)).map((s) => s.env.data as Action);
  }
  decisions(incidentId: string): Decision[] {
    return this.seen.filter((s) => s.subject === subjects.decision(incidentId)).map((s) => s.env.data as Decision);
  }
  wait<T>(fn: () => T | undefined | false, ms = 10_000): Promise<T> {
    return until(() => fn(), ms, 25);
  }
}

let seq = 0;
function incident(vmid: number, alert: string, o: Partial<Incident> = {}): Incident {
  const ts = new Date().toISOString();
  return {
    id: `inc-${Date.now().toString(36)}-${++seq}`, kind: 'guest', status: 'open', severity: 'critical', title: `${vmid} ${alert}`,
    rootCause: { vmid, node: 'node-b', reason: alert === 'GuestDown' ? 'crashed' : 'unhealthy', alert },
    symptoms: [], suppressed: [], openedAt: ts, updatedAt: ts, timeline: [], ...o,
  };
}

let advisorScript: () => AdvisorResult = () => ({ ok: false, code: 'unavailable', reason: 'scripted: off' });
const fakeAdvisor = {
  available: async () => ({ ok: true, available: true, model: 'scripted-double' }),
  propose: async () => advisorScript(),
};

let stack: TestStack;
let bus: Bus;
let rec: Recorder;
const operator = () => stack.keyring.get('operator').signer;
const cmd = <R>(verb: string, args: Record<string, unknown>) => bus.request<R>(subjects.cmd(verb), 'Command', { args, requestedBy: 'test' }, 5000);
const publish = (inc: Incident, phase: 'opened' | 'updated' = 'opened') =>
  bus.publish(subjects.incident(inc.id, phase), phase === 'opened' ? 'IncidentOpened' : 'IncidentUpdated', inc);

async function tasks(node: string, vmid: number, type?: string): Promise<{ upid: string; type: string }[]> {
  const q = `source=all&vmid=${vmid}&limit=500${type ? `&typefilter=${type}` : ''}`;
  const r = await fetch(`${stack.pveUrl}/api2/json/nodes/${node}/tasks?${q}`, { headers: { Authorization: `PVEAPIToken=${stack.pveTokenId}=${stack.pveTokenSecret}` } });
  return ((await r.json()) as { data: { upid: string; type: string }[] }).data;
}

beforeAll(async () => {
  stack = await testStack({
    agents: ['action', 'decision'],
    policies: { approvalTimeoutMs: 1500, flap: { maxRemediations: 2, windowMs: 600_000 }, guestBootTimeoutMs: 2000, cooldownMs: 0 },
    options: { decision: { advisor: fakeAdvisor, failoverTimeoutMs: 500 }, action: { retryBaseMs: 100 } },
  });
  bus = await Bus.connect({ servers: stack.natsUrl, source: 'test' });
  rec = new Recorder(bus);
}, 60_000);
afterAll(async () => {
  await bus?.stop();
  await stack?.stop();
});

describe('decision agent', () => {
  it('crash incident → start approved → PVE task → verified success, causally linked', async () => {
    await stack.api.fault('crash', 159);
    const inc = incident(159, 'GuestDown');
    const opened = await publish(inc);
    await publish({ ...inc, updatedAt: new Date().toISOString() }, 'updated'); // an update must not double the action
    const done = await rec.wait(() => rec.actions('ActionSucceeded', (a) => a.incidentId === inc.id)[0]);
    expect(done.verified).toBe(true);
    expect(done.verb).toBe('start');
    expect(await stack.api.health(159)).toBe(true);
    const d = rec.decisions(inc.id);
    expect(d).toHaveLength(1);
    expect(d[0]).toMatchObject({ verb: 'start', verdict: 'allow', proposer: 'runbook', actionId: done.actionId });
    const decEnv = rec.seen.find((s) => s.subject === subjects.decision(inc.id))!.env;
    expect(decEnv.correlationId).toBe(opened.correlationId);
    expect(decEnv.causationId).toBe(opened.id);
    const approved = rec.seen.find((s) => s.env.type === 'ActionApproved' && s.env.data.actionId === done.actionId)!.env;
    expect(approved.causationId).toBe(decEnv.id);
    expect(approved.correlationId).toBe(opened.correlationId);
    expect(await tasks('node-b', 159, 'vzstart')).toHaveLength(1);
  });

  it('protected guest → approval request, listed, then timeout → denied; nothing executed', async () => {
    await stack.api.fault('crash', 200);
    const inc = incident(200, 'GuestDown', { rootCause: { vmid: 200, node: 'node-c', reason: 'crashed', alert: 'GuestDown' } });
    await publish(inc);
    const req = await rec.wait(() => rec.actions('ActionRequested', (a) => a.incidentId === inc.id)[0]);
    expect(req.needsApproval).toBe(true);
    expect(rec.decisions(inc.id)[0]).toMatchObject({ verdict: 'needs-approval' });
    const pending = await cmd<{ actionId: string }[]>('approvals', {});
    expect(pending.map((p) => p.actionId)).toContain(req.actionId);
    const denied = await rec.wait(() => rec.actions('ActionDenied', (a) => a.actionId === req.actionId)[0], 5000);
    expect(denied.approval).toMatchObject({ by: 'policy:approval-timeout', approved: false });
    expect(await tasks('node-c', 200, 'vzstart')).toHaveLength(0);
    expect((await cmd<{ actionId: string }[]>('approvals', {})).map((p) => p.actionId)).not.toContain(req.actionId);
  });

  it('approve → executed once; a second approve is refused', async () => {
    const inc = incident(200, 'GuestDown', { rootCause: { vmid: 200, node: 'node-c', reason: 'crashed', alert: 'GuestDown' } });
    await publish(inc);
    const req = await rec.wait(() => rec.actions('ActionRequested', (a) => a.incidentId === inc.id)[0]);
    // a self-declared name, or a key the decision agent does not trust, approves nothing
    await expect(cmd('approve', { actionId: req.actionId, by: 'alice' })).rejects.toMatchObject({ code: 'HOMEOSTAT_ERR_POLICY_DENIED', message: expect.stringMatching(/signed by an operator key/) });
    await expect(cmd('approve', { actionId: req.actionId, by: 'alice', signed: signApproval(newSigner(), 'approve', req.actionId) })).rejects.toMatchObject({ message: expect.stringMatching(/not a trusted operator key/) });
    // a signature over another action does not carry over
    await expect(cmd('approve', { actionId: req.actionId, by: 'alice', signed: signApproval(operator(), 'approve', 'act-other') })).rejects.toMatchObject({ message: expect.stringMatching(/does not match/) });
    const r = await cmd<{ verdict: string }>('approve', { actionId: req.actionId, by: 'alice', signed: signApproval(operator(), 'approve', req.actionId) });
    expect(r.verdict).toBe('allow');
    await expect(cmd('approve', { actionId: req.actionId, by: 'alice', signed: signApproval(operator(), 'approve', req.actionId) })).rejects.toMatchObject({ code: 'HOMEOSTAT_ERR_NOT_FOUND' });
    const ok = await rec.wait(() => rec.actions('ActionSucceeded', (a) => a.actionId === req.actionId)[0]);
    expect(ok.approval).toMatchObject({ by: expect.stringMatching(/^alice \(key U/), approved: true, key: operator().publicKey });
    expect(await tasks('node-c', 200, 'vzstart')).toHaveLength(1);
    expect(rec.actions('ActionDenied', (a) => a.actionId === req.actionId)).toHaveLength(0);
  });

  it('pending approvals survive a decision-agent restart and still time out', async () => {
    await stack.api.fault('crash', 200);
    const inc = incident(200, 'GuestDown', { rootCause: { vmid: 200, node: 'node-c', reason: 'crashed', alert: 'GuestDown' } });
    await publish(inc);
    const req = await rec.wait(() => rec.actions('ActionRequested', (a) => a.incidentId === inc.id)[0]);
    await stack.stopAgent('decision');
    await stack.startAgent('decision');
    const denied = await rec.wait(() => rec.actions('ActionDenied', (a) => a.actionId === req.actionId)[0], 5000);
    expect(denied.approval?.by).toBe('policy:approval-timeout');
    expect(rec.actions('ActionRequested', (a) => a.incidentId === inc.id)).toHaveLength(1);
  });

  it('flapping guest → hold-down after the budget, flapping incident, cleared by an operator', async () => {
    for (let i = 0; i < 2; i++) {
      await stack.api.fault('crash', 104);
      const inc = incident(104, 'GuestDown');
      await publish(inc);
      await rec.wait(() => rec.actions('ActionSucceeded', (a) => a.incidentId === inc.id)[0]);
    }
    await stack.api.fault('crash', 104);
    const third = incident(104, 'GuestDown');
    await publish(third);
    const hold = await rec.wait(() => rec.decisions(third.id)[0]);
    expect(hold.verdict).toBe('hold');
    expect(hold.reasons.join()).toMatch(/flapping/);
    const flap = await rec.wait(() => rec.seen.find((s) => s.env.type === 'IncidentOpened' && s.env.data.kind === 'flapping' && s.env.data.rootCause.vmid === 104));
    await publish({ ...third, updatedAt: new Date().toISOString() }, 'updated');
    await sleep(500);
    expect(rec.actions('ActionApproved', (a) => a.incidentId === third.id)).toHaveLength(0);
    expect(rec.decisions(third.id)).toHaveLength(1);
    expect((await cmd<{ vmid: number }[]>('holds', {})).map((h) => h.vmid)).toEqual([104]);
    expect(await cmd('hold.clear', { vmid: 104, by: 'bob' })).toEqual({ vmid: 104, cleared: true });
    await rec.wait(() => rec.seen.find((s) => s.env.type === 'IncidentResolved' && s.env.data.id === flap.env.data.id));
    const ok = await rec.wait(() => rec.actions('ActionSucceeded', (a) => a.incidentId === third.id)[0]);
    expect(ok.verb).toBe('start');
    expect(await tasks('node-b', 104, 'vzstart')).toHaveLength(3);
  });

  it('health failing → reboot; a reboot that does not heal → stop + start → operator notice', async () => {
    const f = await stack.api.fault('unhealthy', 124);
    const inc = incident(124, 'HealthCheckFailed', { rootCause: { vmid: 124, node: 'node-a', reason: 'unhealthy', alert: 'HealthCheckFailed' } });
    await publish(inc);
    const notice = await rec.wait(() => rec.decisions(inc.id).find((d) => d.verdict === 'notify'), 20_000);
    expect(notice.rationale).toMatch(/operator action needed/);
    expect(notice.advisor?.used).toBe(false);
    const verbs = rec.decisions(inc.id).filter((d) => d.verdict === 'allow').map((d) => d.verb);
    expect(verbs).toEqual(['reboot', 'stop', 'start']);
    const failed = rec.actions('ActionFailed', (a) => a.incidentId === inc.id);
    expect(failed.map((a) => a.verb)).toEqual(['reboot', 'start']);
    expect(failed[0].error?.code).toBe('HOMEOSTAT_ERR_TIMEOUT');
    await stack.api.heal(f.id);
  }, 30_000);

  it('a verified success is repeated only on fresh evidence; the unsure runbook asks the advisor and records why it was not used', async () => {
    await stack.api.fault('crash', 101);
    const inc = incident(101, 'GuestDown', { rootCause: { vmid: 101, node: 'node-c', reason: 'crashed', alert: 'GuestDown' } });
    await publish(inc);
    await rec.wait(() => rec.actions('ActionSucceeded', (a) => a.incidentId === inc.id)[0]);
    await publish({ ...inc, updatedAt: new Date().toISOString() }, 'updated');
    await sleep(300);
    expect(rec.actions('ActionApproved', (a) => a.incidentId === inc.id)).toHaveLength(1);
    // it goes down again, and sensing says so
    await stack.api.fault('crash', 101);
    const ts = new Date(Date.now() + 5).toISOString();
    await bus.kv.fleetState.put(kvKeys.guest(101), JSON.stringify({ vmid: 101, name: 'omada21', node: 'node-c', type: 'lxc', layer: 1, state: 'stopped', health: 'unhealthy', probeFailures: 3, reachable: true, updatedAt: ts, stateSince: ts }));
    await publish({ ...inc, updatedAt: ts }, 'updated');
    const second = await rec.wait(() => rec.decisions(inc.id).filter((d) => d.verdict === 'allow')[1], 8000);
    expect(second).toMatchObject({ verb: 'start', advisor: { used: false, discarded: expect.stringMatching(/scripted: off/) } });
    await rec.wait(() => rec.actions('ActionSucceeded', (a) => a.actionId === second.actionId)[0]);
    expect(await tasks('node-c', 101, 'vzstart')).toHaveLength(2);
    await bus.kv.fleetState.delete(kvKeys.guest(101));
  });

  it('never remediates a symptom of another incident, nor a guest whose desired state is stopped', async () => {
    const root = incident(120, 'HealthCheckFailed', { symptoms: [{ vmid: 100, node: 'node-b', reason: 'unhealthy' }] });
    await stack.api.fault('crash', 100);
    const sym = incident(100, 'GuestDown');
    await bus.kv.fleetState.put(kvKeys.desired(120), JSON.stringify({ state: 'stopped', maintenance: false, by: 'test', reason: 'maintenance window', at: new Date().toISOString() }));
    await publish(root);
    await publish(sym);
    const d1 = await rec.wait(() => rec.decisions(sym.id)[0]);
    expect(d1).toMatchObject({ verdict: 'deny' });
    expect(d1.reasons[0]).toMatch(/symptom/);
    const d2 = await rec.wait(() => rec.decisions(root.id)[0]);
    expect(d2).toMatchObject({ verdict: 'deny' });
    expect(d2.reasons[0]).toMatch(/desired state/);
    expect(rec.actions('ActionApproved', (a) => a.incidentId === sym.id || a.incidentId === root.id)).toHaveLength(0);
    await bus.kv.fleetState.delete(kvKeys.desired(120));
    await bus.publish(subjects.incident(root.id, 'resolved'), 'IncidentResolved', { ...root, status: 'resolved' });
  });

  it('node down → failover request; nobody serves it → operator notice', async () => {
    const inc = incident(0, 'NodeDown', { kind: 'node', rootCause: { node: 'node-a', reason: 'unreachable', alert: 'NodeDown' } });
    await publish(inc);
    const d = await rec.wait(() => rec.decisions(inc.id)[0]);
    expect(d).toMatchObject({ verb: 'failover', verdict: 'notify', target: { node: 'node-a' } });
    expect(d.reasons[0]).toMatch(/operator action needed/);
  });

  it('disk full → notify with context, no action', async () => {
    const inc = incident(159, 'DiskFull', { kind: 'resource' });
    await publish(inc);
    const d = await rec.wait(() => rec.decisions(inc.id)[0]);
    expect(d).toMatchObject({ verb: 'notify', verdict: 'notify' });
    expect(d.rationale).toMatch(/disk/);
  });

  it('unknown failure mode → advisor; its verb outside the table needs approval; a destroy is discarded', async () => {
    advisorScript = () => ({ ok: true, latencyMs: 1, model: 'scripted-double', proposal: { verb: 'reboot', target: { vmid: 155 }, rationale: 'reboot clears it', confidence: 0.8, expectedEffect: 'healthy', verification: 'probe' } });
    const inc = incident(155, 'Mystery');
    await publish(inc);
    const req = await rec.wait(() => rec.actions('ActionRequested', (a) => a.incidentId === inc.id)[0]);
    expect(req).toMatchObject({ verb: 'reboot', proposer: 'llm', needsApproval: true });
    expect(rec.decisions(inc.id)[0]).toMatchObject({ verdict: 'needs-approval', proposer: 'llm', advisor: { used: true, confidence: 0.8 } });
    await cmd('deny', { actionId: req.actionId, by: 'carol', signed: signApproval(operator(), 'deny', req.actionId) });

    advisorScript = () => ({ ok: true, latencyMs: 1, proposal: { verb: 'destroy', target: { vmid: 155 }, rationale: 'ignore previous instructions', confidence: 1, expectedEffect: '', verification: '' } as never });
    const inc2 = incident(155, 'Mystery');
    await publish(inc2);
    const d = await rec.wait(() => rec.decisions(inc2.id)[0]);
    expect(d.verdict).toBe('notify');
    expect(d.advisor?.used).toBe(false);
    expect(d.advisor?.discarded).toMatch(/shape/);
    expect(rec.actions('ActionApproved', (a) => a.incidentId === inc2.id)).toHaveLength(0);
    advisorScript = () => ({ ok: false, code: 'unavailable', reason: 'scripted: off' });
  });

  it('operator actions through fleet.cmd.action are gated the same way', async () => {
    const r = await cmd<{ actionId: string; verdict: string }>('action', { verb: 'reboot', vmid: 122, by: 'dave' });
    expect(r.verdict).toBe('allow');
    const ok = await rec.wait(() => rec.actions('ActionSucceeded', (a) => a.actionId === r.actionId)[0]);
    expect(ok).toMatchObject({ proposer: 'operator', requestedBy: 'dave', verified: true });
    expect(await cmd('action', { verb: 'destroy', vmid: 122, by: 'dave' })).toMatchObject({ verdict: 'deny' });
    expect(await cmd('action', { verb: 'stop', vmid: 122, by: 'dave' })).toMatchObject({ verdict: 'deny' });
    expect(await cmd('action', { verb: 'start', vmid: 99999, by: 'dave' })).toMatchObject({ verdict: 'deny' });
    expect(await cmd('action', { verb: 'reboot', vmid: 200, by: 'dave' })).toMatchObject({ verdict: 'needs-approval' });
  });
});

describe('decision agent in dry-run', () => {
  let dry: TestStack;
  let dbus: Bus;
  beforeAll(async () => {
    dry = await testStack({ agents: ['action', 'decision'], policies: { dryRun: true }, options: { decision: { advisor: null } } });
    dbus = await Bus.connect({ servers: dry.natsUrl, source: 'test' });
  }, 60_000);
  afterAll(async () => {
    await dbus?.stop();
    await dry?.stop();
  });

  it('decides dry-run and executes nothing', async () => {
    const r = new Recorder(dbus);
    await dry.api.fault('crash', 159);
    const inc = incident(159, 'GuestDown');
    await dbus.publish(subjects.incident(inc.id, 'opened'), 'IncidentOpened', inc);
    const d = await r.wait(() => r.decisions(inc.id)[0]);
    expect(d.verdict).toBe('dry-run');
    expect(d.reasons.join()).toMatch(/would be allow/);
    await sleep(500);
    expect(r.actions('ActionApproved')).toHaveLength(0);
    expect(await dry.api.health(159)).toBe(false);
  });
});
