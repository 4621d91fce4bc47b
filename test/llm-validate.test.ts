// validate.ts on its own: the checks that do not need a model.
import { describe, expect, it } from 'vitest';
import { checkProposal, validateProposal, type Validation } from '../llm/mod.ts';
import { context159, json, proposal } from '../testkit/mod.ts';

const all = context159({ allowedVerbs: ['start', 'reboot', 'shutdown', 'stop', 'migrate', 'rollback'] });
const code = (v: Validation) => (v.ok ? 'ok' : v.code);

describe('validateProposal', () => {
  it('accepts a good proposal and returns it', () => {
    expect(validateProposal(json(proposal()), all)).toEqual({ ok: true, proposal: proposal() });
  });

  it('the size limit is checked before parsing', () => {
    const body = json(proposal());
    const n = Buffer.byteLength(body);
    expect(code(validateProposal(body, all, { maxOutputBytes: n }))).toBe('ok');
    expect(code(validateProposal(body, all, { maxOutputBytes: n - 1 }))).toBe('too-large');
  });

  it('code fences and prose are not JSON', () => {
    expect(code(validateProposal('```json\n' + json(proposal()) + '\n```', all))).toBe('invalid-json');
    expect(code(validateProposal('', all))).toBe('invalid-json');
  });

  it('strips control characters from the model text it passes on', () => {
    const r = validateProposal(json(proposal({ rationale: 'reboot\u001b[2J now\u202E' })), all);
    expect(r.ok && r.proposal.rationale).toBe('reboot [2J now ');
  });

  it('a discard carries a bounded excerpt without control characters', () => {
    const r = validateProposal(`\u001b]0;pwned\u0007${'q'.repeat(5000)}`, all);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.excerpt!.length).toBeLessThanOrEqual(300);
      expect(r.excerpt).not.toMatch(/[\u0000-\u001f]/);
    }
  });
});

describe('checkProposal', () => {
  it.each([
    ['verb is case-sensitive', { ...proposal(), verb: 'Start' }, 'unknown-verb'],
    ['verb must be a string', { ...proposal(), verb: 7 }, 'schema'],
    ['null', null, 'schema'],
    ['rm -rf is forbidden', { ...proposal(), verb: 'exec' }, 'forbidden-verb'],
    ['PVE reset is forbidden', { ...proposal(), verb: 'reset' }, 'forbidden-verb'],
    ['an action verb needs a target vmid', proposal({ verb: 'start', target: {} }), 'unknown-target'],
    ['a node-only target for an action', proposal({ verb: 'reboot', target: { node: 'node-b' } }), 'unknown-target'],
    ['notify without a target', proposal({ verb: 'notify', target: {} }), 'ok'],
    ['none naming a slice guest', proposal({ verb: 'none', target: { vmid: 122 } }), 'ok'],
    ['notify naming a guest outside the slice', proposal({ verb: 'notify', target: { vmid: 200 } }), 'unknown-target'],
    ['migrate without a target node', proposal({ verb: 'migrate' }), 'schema'],
    ['migrate to its own node', proposal({ verb: 'migrate', params: { targetNode: 'node-b' } }), 'unknown-target'],
    ['migrate to an unknown node', proposal({ verb: 'migrate', params: { targetNode: 'node-q' } }), 'unknown-target'],
    ['migrate to a known node', proposal({ verb: 'migrate', params: { targetNode: 'node-a' } }), 'ok'],
    ['rollback without a snapshot', proposal({ verb: 'rollback' }), 'schema'],
    ['rollback to a path-like name', proposal({ verb: 'rollback', params: { snapname: '../../etc' } }), 'schema'],
    ['rollback to a PVE snapshot name', proposal({ verb: 'rollback', params: { snapname: 'chaos-pre_1' } }), 'ok'],
    ['an extra params key', { ...proposal(), params: { force: true } }, 'schema'],
    ['an empty rationale', proposal({ rationale: '' }), 'schema'],
  ])('%s → %s', (_name, input, want) => {
    expect(code(checkProposal(input, all))).toBe(want);
  });

  it('nodes of the slice count even without a nodes list', () => {
    const ctx = { ...all, nodes: undefined };
    expect(code(checkProposal(proposal({ verb: 'migrate', target: { vmid: 159 }, params: { targetNode: 'node-a' } }), ctx))).toBe('ok');
    expect(code(checkProposal(proposal({ verb: 'migrate', target: { vmid: 159 }, params: { targetNode: 'node-c' } }), ctx))).toBe('ok');
  });
});
