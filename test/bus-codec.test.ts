import { describe, expect, it } from 'vitest';
import { decode, encode, encodeOwn, makeEnvelope, sentBy, subjects, familyOf, FAMILIES, MAX_PAYLOAD_BYTES, token, subjectMatches, patternWithin } from '../bus/mod.ts';

const now = new Date().toISOString();
const samples: [string, string, unknown][] = [
  [subjects.guestEvent('node-a', 101), 'GuestStateChanged', { vmid: 101, node: 'node-a', state: 'stopped', previousState: 'running', health: 'unhealthy', reason: 'crash' }],
  [subjects.nodeEvent('node-b'), 'NodeUnreachable', { node: 'node-b', status: 'unknown', reachable: false }],
  [subjects.apiEvent(), 'PveUnavailable', { available: false, code: 'HOMEOSTAT_ERR_PVE_UNAVAILABLE' }],
  [subjects.agentEvent('decision'), 'AgentStalled', { agent: 'decision', instance: 'h-1-ab', kind: 'consumer', reason: 'consumer decision-incidents: 3 message(s) waiting', since: now }],
  [subjects.metrics('node-a', 101), 'MetricSample', { node: 'node-a', vmid: 101, cpu: 0.2, mem: 1, maxmem: 2, disk: 1, maxdisk: 2 }],
  [subjects.alert('GuestDown'), 'AlertFired', { name: 'GuestDown', status: 'firing', severity: 'critical', fingerprint: 'g101', vmid: 101, summary: 'down', startsAt: now, origin: 'analysis' }],
  [subjects.incident('inc1', 'opened'), 'IncidentOpened', { id: 'inc1', kind: 'guest', status: 'open', severity: 'critical', title: 't', rootCause: { vmid: 101, reason: 'crashed' }, openedAt: now, updatedAt: now }],
  [subjects.decision('inc1'), 'DecisionMade', { incidentId: 'inc1', verb: 'start', target: { vmid: 101 }, proposer: 'runbook', rationale: 'crashed', verdict: 'allow' }],
  [subjects.action('approved'), 'ActionApproved', { actionId: 'a1', verb: 'start', target: { vmid: 101, node: 'node-a' }, proposer: 'runbook', requestedBy: 'decision' }],
  [subjects.workflow('boot', 'wf1', 'GUEST.HEALTHY'), 'GUEST.HEALTHY', { workflowId: 'wf1', kind: 'boot', event: 'GUEST.HEALTHY', vmid: 101 }],
  [subjects.cmd('chaos.run'), 'Command', { args: { name: 'x' } }],
  [subjects.propose('action'), 'ActionProposal', { action: { actionId: 'boot-1:101:start:0', verb: 'start', target: { vmid: 101, node: 'node-a' }, workflowId: 'boot-1' }, proposer: 'workflow' }],
  [subjects.propose('fence'), 'FenceProposal', { workflowId: 'failover-1', node: 'node-b' }],
  [subjects.chat(), 'ChatQuestion', { question: 'what is down?' }],
  [subjects.dlq('fleet.events.guest.a.1'), 'DeadLetter', { subject: 'fleet.events.guest.a.1', reason: 'bad', raw: '{', size: 1, truncated: false, receivedBy: 'x' }],
];

describe('codec', () => {
  it('has a sample for every schema family', () => {
    const covered = new Set(samples.map(([s]) => familyOf(s)?.name));
    expect([...covered].sort()).toEqual(FAMILIES.map((f) => f.name).sort());
  });

  it.each(samples)('round-trips %s', (subject, type, data) => {
    const env = makeEnvelope('test', type, data, { correlationId: 'c1' });
    const r = decode(subject, encode(subject, env));
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(r.env.id).toBe(env.id);
      expect(r.env.correlationId).toBe('c1');
      expect(r.env.data).toMatchObject(data as object);
    }
  });

  it('refuses to publish invalid data', () => {
    const env = makeEnvelope('test', 'GuestStateChanged', { vmid: 'x' });
    expect(() => encode(subjects.guestEvent('a', 101), env)).toThrow(/HOMEOSTAT_ERR_INVALID_MESSAGE|refusing/);
  });

  it('rejects a type not allowed on the family', () => {
    const env = makeEnvelope('test', 'Bogus', samples[0][2]);
    const r = decode(samples[0][0], encode(samples[0][0], env, familyOf(samples[0][0])!.schema as never));
    expect(r.ok).toBe(false);
  });

  it('reports malformed JSON, wrong schema, oversize and bad UTF-8 without throwing', () => {
    const s = subjects.guestEvent('a', 101);
    expect(decode(s, new TextEncoder().encode('{nope'))).toMatchObject({ ok: false, reason: expect.stringMatching(/malformed JSON/) });
    expect(decode(s, new TextEncoder().encode(JSON.stringify(makeEnvelope('t', 'GuestProbe', { vmid: 1 }))))).toMatchObject({ ok: false, reason: expect.stringMatching(/data/) });
    expect(decode(s, new Uint8Array(MAX_PAYLOAD_BYTES + 1))).toMatchObject({ ok: false, reason: expect.stringMatching(/oversize/) });
    expect(decode(s, new Uint8Array([0xff, 0xfe]))).toMatchObject({ ok: false, reason: expect.stringMatching(/UTF-8/) });
  });

  it('escapes data-derived subject tokens', () => {
    expect(token('a.b>*c d')).toBe('a_b__c_d');
    expect(subjects.guestEvent('x.>', 101)).toBe('fleet.events.guest.x__.101');
    expect(subjectMatches('fleet.events.>', 'fleet.events.guest.a.1')).toBe(true);
    expect(subjectMatches('fleet.*.x', 'fleet.a.y')).toBe(false);
    expect(patternWithin('fleet.actions.approved', 'fleet.actions.>')).toBe(true);
    expect(patternWithin('fleet.>', 'fleet.actions.>')).toBe(false);
  });

  it('sentBy reads the source from the head as this codec writes it, and only then', () => {
    const alert = samples.find(([s]) => s.startsWith('fleet.alerts.'))!;
    const own = encodeOwn(alert[0], makeEnvelope('analysis', alert[1], alert[2]));
    expect(sentBy(own, 'analysis')).toBe(true);
    expect(sentBy(encode(alert[0], makeEnvelope('analysis', alert[1], alert[2])), 'analysis')).toBe(true);
    expect(sentBy(own, 'sensing')).toBe(false);
    expect(sentBy(encode(alert[0], makeEnvelope('analysis-2', alert[1], alert[2])), 'analysis')).toBe(false);
    expect(sentBy(encode(alert[0], makeEnvelope('analysi', alert[1], alert[2])), 'analysis')).toBe(false);
    const text = (o: object) => new TextEncoder().encode(JSON.stringify(o));
    // other key orders, escapes, a source further down (data.source): decoded as usual
    expect(sentBy(text({ ts: now, id: 'a', source: 'analysis', type: 'AlertFired', data: {} }), 'analysis')).toBe(false);
    expect(sentBy(text({ id: 'a"', ts: now, source: 'analysis', type: 'AlertFired', data: {} }), 'analysis')).toBe(false);
    expect(sentBy(text({ id: 'a', ts: now, source: 'sensing', type: 'AlertFired', data: { source: 'analysis' } }), 'analysis')).toBe(false);
    expect(sentBy(text({ id: 'a', ts: now }), 'analysis')).toBe(false);
    expect(sentBy(new Uint8Array(), 'analysis')).toBe(false);
    expect(sentBy(text({ id: 'a', ts: now, source: 'analysis' }), 'analysis')).toBe(false); // no field after: not an envelope
  });
});
