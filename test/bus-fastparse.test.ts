// The codec's precompiled fast path (bus/fastparse.ts) must give exactly zod's answer: the same
// success, the same parsed value, on valid messages and on every mutation of them we can think of.
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { FAMILIES } from '../bus/families.ts';
import { compileFast, fastSafeParse } from '../bus/fastparse.ts';
import * as S from '../bus/schemas.ts';
import { decode, encode, makeEnvelope, subjects } from '../bus/mod.ts';

const iso = '2026-12-01T02:30:00.123Z';
const samples: [string, z.ZodType, Record<string, unknown>][] = [
  ['Envelope', S.Envelope, { id: '01JABC', ts: iso, source: 'sensing', type: 'GuestProbe', correlationId: '01JABC', causationId: '01JXYZ', data: { a: 1 } }],
  ['GuestEvent', S.GuestEvent, {
    vmid: 101, node: 'pve1', name: 'web', state: 'running', previousState: 'stopped', health: 'healthy', previousHealth: 'unknown',
    reason: 'probe', resources: { cpu: 0.5, mem: 10, maxmem: 20, disk: 1, maxdisk: 2, uptime: 3 }, certDaysLeft: -3, booting: false,
  }],
  ['NodeEvent', S.NodeEvent, { node: 'pve1', status: 'online', previousStatus: 'offline', reachable: true, reason: 'x', resources: { cpu: 1 } }],
  ['MetricSample', S.MetricSample, { node: 'pve1', vmid: 100, cpu: 0, mem: 1, maxmem: 2, disk: 3, maxdisk: 4 }],
  ['AgentEvent', S.AgentEvent, { agent: 'sensing', instance: 'sensing-1', kind: 'pve', reason: 'polls fail', since: '2026-12-01T02:30:00+01:00' }],
  ['ApiEvent', S.ApiEvent, { available: false, code: 'ECONNREFUSED', reason: 'down', since: iso }],
  ['FenceProposal', S.FenceProposal, { workflowId: 'wf-1', node: 'pve2' }],
  ['DeadLetter', S.DeadLetter, { subject: 'fleet.x', reason: 'bad', raw: '{', size: 1, truncated: false, receivedBy: 'analysis' }],
];

const odd: unknown[] = [
  undefined, null, '', 'x', 'x'.repeat(81), 'x'.repeat(2001), '2026-13-01T00:00:00Z', '2026-02-30T00:00:00Z', '2026-12-01T02:30:00',
  0, -1, 1.5, 99, 100, 999_999_999, 1_000_000_000, 2 ** 53, NaN, Infinity, -Infinity, true, false, [], [1], {}, { cpu: -1 },
  'running', 'paused', 'nope', 'pve', new Date(0),
];

/** Every one-field change of `base` (recursively), plus extra keys, plus non-objects. */
function mutations(base: Record<string, unknown>): unknown[] {
  const out: unknown[] = [base, { ...base, extra: 1 }, { ...base, __proto__: { injected: true } }, [], null, 'str', 1];
  for (const key of Object.keys(base)) {
    const { [key]: _gone, ...without } = base;
    out.push(without);
    for (const v of odd) out.push({ ...base, [key]: v });
    const inner = base[key];
    if (inner && typeof inner === 'object' && !Array.isArray(inner)) {
      for (const m of mutations(inner as Record<string, unknown>)) out.push({ ...base, [key]: m });
    }
  }
  return out;
}

describe('bus fast parse', () => {
  it('compiles the hot families (guest, node, metrics events and the envelope)', () => {
    for (const s of [S.Envelope, S.GuestEvent, S.NodeEvent, S.MetricSample]) expect(compileFast(s)).not.toBeNull();
  });

  it.each(samples)('%s: same answer as zod on the sample and all its mutations', (_name, schema, base) => {
    expect(compileFast(schema)).not.toBeNull();
    let accepted = 0;
    let rejected = 0;
    for (const input of mutations(base)) {
      const want = schema.safeParse(input);
      const got = fastSafeParse(schema, input);
      expect(got.success).toBe(want.success);
      if (want.success && got.success) {
        expect(got.data).toStrictEqual(want.data);
        expect(Object.keys(got.data as object)).toEqual(Object.keys(want.data as object));
        accepted++;
      } else rejected++;
    }
    expect(accepted).toBeGreaterThan(0);
    expect(rejected).toBeGreaterThan(0);
  });

  it('schemas it cannot mirror (defaults, refinements, strict objects) are left to zod', () => {
    const withDefault = z.object({ a: z.array(z.string()).default([]) });
    const refined = z.object({ a: z.number() }).refine((v) => v.a > 1);
    const strict = z.strictObject({ a: z.number() });
    const trimmed = z.object({ a: z.string().trim() });
    for (const s of [withDefault, refined, strict, trimmed]) expect(compileFast(s)).toBeNull();
    expect(fastSafeParse(withDefault, {})).toStrictEqual(withDefault.safeParse({}));
    expect(fastSafeParse(refined, { a: 1 }).success).toBe(false);
    expect(fastSafeParse(strict, { a: 1, b: 2 }).success).toBe(false);
    expect(fastSafeParse(trimmed, { a: ' x ' })).toStrictEqual({ success: true, data: { a: 'x' } });
  });

  it('every family: an encoded valid message decodes to what it was, an invalid one is refused with zod\'s reason', () => {
    const subject = subjects.metrics('pve1', 101);
    const env = makeEnvelope('bench', 'MetricSample', { node: 'pve1', vmid: 101, cpu: 0.5, mem: 1, maxmem: 2, disk: 3, maxdisk: 4, junk: 'stripped' });
    const bytes = encode(subject, env);
    const back = decode(subject, bytes);
    expect(back.ok && back.env.data).toStrictEqual({ node: 'pve1', vmid: 101, cpu: 0.5, mem: 1, maxmem: 2, disk: 3, maxdisk: 4 });
    const bad = decode(subject, Buffer.from(JSON.stringify({ ...env, data: { ...env.data, cpu: -1 } })));
    expect(bad).toEqual({ ok: false, reason: expect.stringMatching(/^data cpu: /) });
    for (const f of FAMILIES) expect(typeof fastSafeParse(f.schema, {}).success).toBe('boolean');
  });
});
