// The policy gate and the runbook table: pure, every rule.
import { describe, expect, it } from 'vitest';
import { gate, nextStep, runbookVerbs, type GateFacts, type Proposal, type Step } from '../agents/decision/mod.ts';
import { actionIdFor } from '../agents/decision/mod.ts';
import { Policies } from '../fleet/manifest.ts';
import type { Incident } from '../bus/mod.ts';

const policies = Policies.parse({ cooldownMs: 10_000, flap: { maxRemediations: 3, windowMs: 600_000 }, budgetPerMinute: 5 });
const now = 1_000_000_000;
const guest = { vmid: 159, node: 'node-b', protected: false };
const facts = (f: Partial<GateFacts> = {}): GateFacts => ({ now, guest, rootCause: 159, ...f });
const runbook = (verb: string, f: Partial<Proposal> = {}): Proposal => ({ verb, vmid: 159, proposer: 'runbook', inRunbook: true, ...f });
const llm = (verb: string, inRunbook: boolean): Proposal => ({ verb, vmid: 159, proposer: 'llm', inRunbook });

describe('policy gate', () => {
  it('allows a runbook start of an ordinary guest', () => {
    expect(gate(runbook('start'), facts(), policies).verdict).toBe('allow');
  });

  it('denies destroy/delete/config and unknown verbs', () => {
    for (const v of ['destroy', 'delete', 'set-config', 'purge']) {
      const r = gate(runbook(v), facts(), policies);
      expect(r.verdict, v).toBe('deny');
      expect(r.reasons[0]).toMatch(/never allowed/);
    }
    const r = gate(runbook('dance'), facts(), policies);
    expect(r.verdict).toBe('deny');
    expect(r.reasons[0]).toMatch(/unknown verb/);
    expect(gate(llm('destroy', false), facts(), policies).verdict).toBe('deny');
  });

  it('denies verbs outside the fleet allow-list', () => {
    const p = Policies.parse({ allowedVerbs: ['start'] });
    expect(gate(runbook('reboot'), facts(), p).verdict).toBe('deny');
  });

  it('denies targets outside the fleet', () => {
    expect(gate(runbook('start', { vmid: 4242 }), facts({ guest: undefined }), policies).verdict).toBe('deny');
  });

  it('stop only for a hung guest', () => {
    expect(gate(runbook('stop'), facts(), policies).verdict).toBe('deny');
    expect(gate(runbook('stop'), facts({ hung: true }), policies).verdict).toBe('allow');
  });

  it('migrate only in a failover with the source node fenced', () => {
    const p = runbook('migrate', { targetNode: 'node-a', proposer: 'workflow' });
    expect(gate(p, facts(), policies).verdict).toBe('deny');
    expect(gate(p, facts({ failover: { sourceNode: 'node-b', fenced: false } }), policies).reasons[0]).toMatch(/fenced/);
    expect(gate(p, facts({ failover: { sourceNode: 'node-c', fenced: true } }), policies).verdict).toBe('deny');
    expect(gate({ ...p, targetNode: undefined }, facts({ failover: { sourceNode: 'node-b', fenced: true } }), policies).verdict).toBe('deny');
    expect(gate(p, facts({ failover: { sourceNode: 'node-b', fenced: true } }), policies).verdict).toBe('allow');
  });

  it("rollback only as a chaos experiment's own rollback", () => {
    const p = runbook('rollback', { proposer: 'chaos', snapname: 'pre-chaos' });
    expect(gate(p, facts(), policies).verdict).toBe('deny');
    expect(gate(p, facts({ chaosRollback: true }), policies).verdict).toBe('allow');
    expect(gate(llm('rollback', false), facts(), policies).verdict).toBe('deny');
  });

  it('never remediates a symptom, a guest desired stopped, or one in maintenance', () => {
    expect(gate(runbook('start'), facts({ isSymptom: true }), policies).reasons[0]).toMatch(/symptom/);
    expect(gate(runbook('start'), facts({ desired: { state: 'stopped', maintenance: false } }), policies).verdict).toBe('deny');
    expect(gate(runbook('reboot'), facts({ desired: { state: 'running', maintenance: true } }), policies).verdict).toBe('deny');
    expect(gate(runbook('shutdown'), facts({ desired: { state: 'stopped', maintenance: false } }), policies).verdict).toBe('allow');
  });

  it('protected guests need an approval; an approval lets them through', () => {
    const f = facts({ guest: { vmid: 200, node: 'node-c', protected: true } });
    const r = gate(runbook('start', { vmid: 200 }), f, policies);
    expect(r.verdict).toBe('needs-approval');
    expect(r.reasons[0]).toMatch(/protected/);
    expect(gate(runbook('start', { vmid: 200 }), { ...f, approved: true }, policies).verdict).toBe('allow');
    expect(gate(runbook('start', { vmid: 200, proposer: 'operator' }), f, policies).verdict).toBe('needs-approval');
  });

  it('LLM proposals outside the runbook table always need approval; inside they are gated like the runbook', () => {
    const r = gate(llm('shutdown', false), facts(), policies);
    expect(r.verdict).toBe('needs-approval');
    expect(r.reasons.join()).toMatch(/outside the runbook table/);
    expect(gate(llm('start', true), facts(), policies).verdict).toBe('allow');
    expect(gate(llm('stop', false), facts({ hung: true }), policies).verdict).toBe('needs-approval');
  });

  it('one action per guest', () => {
    const r = gate(runbook('start'), facts({ busy: true }), policies);
    expect(r.verdict).toBe('hold');
    expect(r.retryAt).toBeGreaterThan(now);
  });

  it('cooldown per guest, for automated proposers only', () => {
    const r = gate(runbook('start'), facts({ remediations: [now - 4000] }), policies);
    expect(r.verdict).toBe('hold');
    expect(r.retryAt).toBe(now + 6000);
    expect(gate(runbook('start'), facts({ remediations: [now - 11_000] }), policies).verdict).toBe('allow');
    expect(gate(runbook('start', { proposer: 'operator' }), facts({ remediations: [now - 4000] }), policies).verdict).toBe('allow');
    expect(gate(runbook('start'), facts({ remediations: [now - 4000], continuation: true }), policies).verdict).toBe('allow');
  });

  it('flap hold-down after maxRemediations in the window, until cleared', () => {
    const r = gate(runbook('start'), facts({ remediations: [now - 300_000, now - 200_000, now - 100_000] }), policies);
    expect(r.verdict).toBe('hold');
    expect(r.flapping).toBe(true);
    expect(r.retryAt).toBeUndefined();
    // old remediations fall out of the window
    expect(gate(runbook('start'), facts({ remediations: [now - 700_000, now - 200_000, now - 100_000] }), policies).verdict).toBe('allow');
    const held = gate(runbook('start'), facts({ held: true }), policies);
    expect(held.verdict).toBe('hold');
    expect(held.flapping).toBeUndefined();
  });

  it('global budget per minute', () => {
    const recent = [now - 50_000, now - 40_000, now - 30_000, now - 20_000, now - 10_000];
    const r = gate(runbook('start'), facts({ recentActions: recent }), policies);
    expect(r.verdict).toBe('hold');
    expect(r.retryAt).toBe(now + 10_000);
    expect(gate(runbook('start'), facts({ recentActions: recent.slice(1) }), policies).verdict).toBe('allow');
  });

  it('dry-run: nothing executed, the would-be verdict in the reasons', () => {
    const r = gate(runbook('start'), facts({ dryRun: true }), policies);
    expect(r.verdict).toBe('dry-run');
    expect(r.reasons.join()).toMatch(/would be allow/);
    expect(gate(runbook('destroy'), facts({ dryRun: true }), policies).verdict).toBe('deny');
  });

  it('is deterministic', () => {
    const f = facts({ remediations: [now - 4000], recentActions: [now - 1000] });
    expect(gate(runbook('reboot'), f, policies)).toEqual(gate(runbook('reboot'), f, policies));
  });
});

const incident = (alert: string, kind: Incident['kind'] = 'guest'): Incident => ({
  id: 'inc-1', kind, status: 'open', severity: 'critical', title: 't',
  rootCause: { vmid: 159, node: 'node-b', reason: 'x', alert, ...(kind === 'node' ? { vmid: undefined } : {}) },
  symptoms: [], suppressed: [], openedAt: new Date(now).toISOString(), updatedAt: new Date(now).toISOString(), timeline: [],
});
const step = (verb: Step['verb'], status: Step['status'], doneAt = now - 60_000): Step => ({ actionId: 'a', vmid: 159, verb, attempt: 0, status, proposer: 'runbook', at: doneAt - 1000, doneAt });

describe('runbook table', () => {
  it('crash → start; repeated failure → start again, unsure; two failed starts → notify', () => {
    expect(nextStep(incident('GuestDown'), [], now, 5000)).toMatchObject({ kind: 'act', verb: 'start' });
    expect(nextStep(incident('GuestDown'), [step('start', 'failed')], now, 5000)).toMatchObject({ kind: 'act', verb: 'start', uncertain: expect.any(String) });
    expect(nextStep(incident('GuestDown'), [step('start', 'failed'), step('start', 'failed')], now, 5000)).toMatchObject({ kind: 'notify' });
  });

  it('after a verified success, repeats only on fresh evidence of a new failure', () => {
    expect(nextStep(incident('GuestDown'), [step('start', 'succeeded', now - 1000)], now, 5000, true)).toMatchObject({ kind: 'wait', until: now + 4000 });
    // an incident that merely stays open (analysis waits for symptoms) is not a new failure
    expect(nextStep(incident('GuestDown'), [step('start', 'succeeded')], now, 5000)).toMatchObject({ kind: 'wait', until: now + 5000 });
    expect(nextStep(incident('HealthCheckFailed'), [step('start', 'succeeded')], now, 5000, false).kind).toBe('wait');
    expect(nextStep(incident('GuestDown'), [step('start', 'succeeded')], now, 5000, true)).toMatchObject({ kind: 'act', verb: 'start', uncertain: expect.any(String) });
    expect(nextStep(incident('HealthCheckFailed'), [step('start', 'succeeded')], now, 5000, true)).toMatchObject({ kind: 'act', verb: 'reboot' });
  });

  it('health failing → reboot → stop (hung) → start (continuation) → notify', () => {
    const inc = incident('HealthCheckFailed');
    expect(nextStep(inc, [], now, 5000)).toMatchObject({ kind: 'act', verb: 'reboot' });
    expect(nextStep(inc, [step('reboot', 'failed')], now, 5000)).toMatchObject({ kind: 'act', verb: 'stop', hung: true });
    expect(nextStep(inc, [step('reboot', 'succeeded')], now, 5000, true)).toMatchObject({ kind: 'act', verb: 'stop', hung: true });
    expect(nextStep(inc, [step('reboot', 'failed'), step('stop', 'succeeded')], now, 5000)).toMatchObject({ kind: 'act', verb: 'start', continuation: true });
    expect(nextStep(inc, [step('reboot', 'failed'), step('stop', 'succeeded'), step('start', 'succeeded')], now, 5000, true)).toMatchObject({ kind: 'notify', uncertain: expect.any(String) });
  });

  it('node down → failover; resources, certs, API, external → notify', () => {
    expect(nextStep(incident('NodeDown', 'node'), [], now, 5000)).toMatchObject({ kind: 'failover', node: 'node-b' });
    for (const a of ['DiskFull', 'HighCPU', 'HighMemory', 'CertExpiring', 'PveUnavailable', 'External']) {
      expect(nextStep(incident(a, 'resource'), [], now, 5000).kind, a).toBe('notify');
    }
    expect(nextStep(incident('Mystery'), [], now, 5000)).toMatchObject({ kind: 'notify', uncertain: expect.stringMatching(/unknown failure mode/) });
  });

  it('a denied or dry-run step ends the case', () => {
    expect(nextStep(incident('GuestDown'), [step('start', 'denied')], now, 5000).kind).toBe('done');
    expect(nextStep(incident('GuestDown'), [step('start', 'dry-run')], now, 5000).kind).toBe('done');
  });

  it('runbook verbs per failure mode, and deterministic action ids', () => {
    expect(runbookVerbs('GuestDown')).toEqual(['start']);
    expect(runbookVerbs('HealthCheckFailed')).toContain('reboot');
    expect(runbookVerbs('DiskFull')).toEqual([]);
    expect(actionIdFor('inc-1', 'start', 0)).toBe(actionIdFor('inc-1', 'start', 0));
    expect(actionIdFor('inc-1', 'start', 0)).not.toBe(actionIdFor('inc-1', 'start', 1));
    expect(actionIdFor('inc-1', 'start', 0)).toMatch(/^act-[0-9a-f]{16}$/);
  });
});
