// Workflows and chaos are proposers like any other: dry-run holds for a failover (fencing
// included), and a chaos experiment's action on a protected guest waits for an operator.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { subjects, type Action, type Decision, type Envelope, type ProposalVerdict } from '../bus/mod.ts';
import { runWorkflow } from '../workflows/mod.ts';
import type { FailoverReport } from '../state-machines/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';

const record = (stack: TestStack) => {
  const seen: { subject: string; env: Envelope<Action | Decision> }[] = [];
  stack.bus.nc.subscribe('fleet.>', { callback: (_e, m) => void seen.push({ subject: m.subject, env: JSON.parse(new TextDecoder().decode(m.data)) }) });
  return seen;
};

describe('dry-run failover', () => {
  let stack: TestStack;
  let seen: ReturnType<typeof record>;
  beforeAll(async () => {
    stack = await testStack({ policies: { dryRun: true }, options: { decision: { advisor: null } } });
    seen = record(stack);
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });

  it('a node goes down: decided and recorded, nothing fenced, nothing moved, nothing started', async () => {
    const before = (await stack.api.fleet()).guests.filter((g) => g.node === 'node-b').map((g) => g.vmid).sort();
    const fault = await stack.api.fault('node-down', 'node-b');
    try {
      // the automatic path: the decision agent does not even hand it to the workflow
      const auto = await until(() => seen.find((s) => s.env.type === 'DecisionMade' && (s.env.data as Decision).verb === 'failover')?.env.data as Decision | undefined, 20_000);
      expect(auto).toMatchObject({ verdict: 'dry-run', target: { node: 'node-b' } });
      // an operator's explicit failover: the workflow asks to fence, the gate says dry-run
      const r = await runWorkflow(stack.bus, 'failover', { node: 'node-b' });
      expect(r.status).toBe('aborted');
      const rep = r.output as FailoverReport;
      expect(rep.fenced).toBe(false);
      expect(rep.reason).toMatch(/dry-run/);
      const f = await stack.api.fleet();
      expect(f.nodes.find((n) => n.name === 'node-b')).toMatchObject({ fenced: false });
      expect(f.guests.filter((g) => g.node === 'node-b').map((g) => g.vmid).sort()).toEqual(before);
      expect(seen.filter((s) => s.env.type === 'ActionApproved')).toEqual([]);
      expect(seen.some((s) => s.env.type === 'DecisionMade' && (s.env.data as Decision).verdict === 'dry-run' && /fence/.test((s.env.data as Decision).reasons.join()))).toBe(true);
    } finally {
      await stack.api.heal(fault.id);
    }
  }, 60_000);
});

describe('chaos against a protected guest', () => {
  let stack: TestStack;
  let seen: ReturnType<typeof record>;
  beforeAll(async () => {
    stack = await testStack({ agents: ['action', 'decision'], policies: { approvalTimeoutMs: 60_000 }, options: { decision: { advisor: null } } });
    seen = record(stack);
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });

  const propose = (verb: Action['verb'], vmid: number, node: string, actionId: string) =>
    stack.bus.request<ProposalVerdict>(subjects.propose('action'), 'ActionProposal', {
      action: { actionId, verb, target: { vmid, node }, params: {}, workflowId: 'chaos-test', rationale: 'chaos experiment with blastRadius.allowProtected: true' },
      proposer: 'chaos',
    });

  it("a stop of a protected guest (what a chaos fault is on real PVE) waits for an operator, whatever the experiment file says", async () => {
    const r = await propose('stop', 200, 'node-c', 'chaos-test:0:0');
    expect(r.verdict).toBe('needs-approval');
    expect(r.reasons.join()).toMatch(/protected/);
    const req = await until(() => seen.find((s) => s.env.type === 'ActionRequested' && (s.env.data as Action).actionId === 'chaos-test:0:0')?.env.data as Action | undefined, 5000);
    expect(req).toMatchObject({ proposer: 'chaos', needsApproval: true, target: { vmid: 200 } });
    await stack.bus.nc.flush();
    expect(seen.filter((s) => s.env.type === 'ActionApproved' || s.env.type === 'ActionStarted')).toEqual([]);
    expect((await stack.api.fleet()).guests.find((g) => g.vmid === 200)?.status).toBe('running');
  });

  it('the same fault on an ordinary guest is allowed, sealed and run; a rollback outside chaos is refused', async () => {
    const r = await propose('stop', 104, 'node-b', 'chaos-test:1:0');
    expect(r.verdict).toBe('allow');
    const ok = await until(() => seen.find((s) => s.env.type === 'ActionSucceeded' && (s.env.data as Action).actionId === 'chaos-test:1:0')?.env.data as Action | undefined, 20_000);
    expect(ok.proposer).toBe('chaos');
    const approved = seen.find((s) => s.env.type === 'ActionApproved' && (s.env.data as Action).actionId === 'chaos-test:1:0')!.env.data as Action;
    expect(approved.seal?.by).toBe(stack.keyring.get('decision').publicKey);
    const wf = await stack.bus.request<ProposalVerdict>(subjects.propose('action'), 'ActionProposal', {
      action: { actionId: 'boot-x:104:rollback', verb: 'rollback', target: { vmid: 104, node: 'node-b' }, params: { snapname: 'x' }, workflowId: 'boot-x' }, proposer: 'workflow',
    });
    expect(wf.verdict).toBe('deny');
  }, 40_000);
});
