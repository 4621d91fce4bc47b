// The schema validator the conformance test relies on must catch what it claims to catch.
import { describe, expect, it } from 'vitest';
import { loadPveSchema, validatePveValue, type PveSchemaNode } from './helpers/pve-schema.ts';

const item: PveSchemaNode = {
  type: 'object',
  properties: {
    vmid: { type: 'integer', minimum: 100, maximum: 999999999 },
    status: { type: 'string', enum: ['stopped', 'running'] },
    cpu: { type: 'number', optional: 1 },
    template: { type: 'boolean', optional: 1 },
    repoid: { type: 'string', pattern: '[0-9a-fA-F]{8,64}', optional: 1 },
    nested: { type: 'object', optional: 1, properties: { a: { type: 'string' } } },
  },
};

describe('validatePveValue', () => {
  it('accepts a valid value, booleans as 0/1, and extra keys when additionalProperties is absent', () => {
    expect(validatePveValue(item, { vmid: 101, status: 'running', cpu: 0.5, template: 0, extra: 'x' })).toEqual([]);
    expect(validatePveValue({ type: 'array', items: item }, [{ vmid: 101, status: 'stopped', template: true }])).toEqual([]);
    expect(validatePveValue({ type: 'null' }, null)).toEqual([]);
  });

  it('names each problem with its JSON path', () => {
    const problems = validatePveValue({ type: 'array', items: item }, [
      { vmid: 101, status: 'running' },
      { vmid: 99.5, status: 'paused', cpu: '0.1', template: 2, repoid: 'xyz', nested: { a: 1 } },
      { status: 'running' },
    ]);
    expect(problems.map((p) => p.path)).toEqual(['$[1].vmid', '$[1].status', '$[1].cpu', '$[1].template', '$[1].repoid', '$[1].nested.a', '$[2].vmid']);
    expect(problems[6].problem).toMatch(/required/);
  });

  it('checks ranges, types of containers and additionalProperties: 0', () => {
    expect(validatePveValue(item, { vmid: 5, status: 'running' })[0].problem).toMatch(/minimum/);
    expect(validatePveValue({ type: 'array', items: item }, { vmid: 101 })[0].problem).toMatch(/expected array/);
    expect(validatePveValue(item, [])[0].problem).toMatch(/expected object/);
    const closed: PveSchemaNode = { type: 'object', additionalProperties: 0, properties: { a: { type: 'string' } } };
    expect(validatePveValue(closed, { a: 'x', b: 1 })).toEqual([{ path: '$.b', problem: expect.stringMatching(/additional/) }]);
    expect(validatePveValue({ type: 'null' }, 'x')[0].problem).toMatch(/expected null/);
  });

  it('runs on the real schema: a bare version object lacks required fields', () => {
    const s = loadPveSchema();
    const problems = validatePveValue(s['/version'].GET.returns, { version: '9.0.1' });
    expect(problems.map((p) => p.path).sort()).toEqual(['$.release', '$.repoid']);
  });
});
