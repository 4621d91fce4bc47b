// Sensing's metric samples are encoded straight from its records, without the zod pass: the bytes
// must be what the validating encoder makes of the same sample, and decode as valid.
import { describe, expect, it } from 'vitest';
import { decode, encode, makeEnvelope, subjects } from '../bus/mod.ts';
import { metricSample, metricSampleBytes } from '../agents/sensing/publish.ts';
import type { MetricSource } from '../agents/sensing/tracker.ts';

const ts = '2026-12-01T08:00:00.123Z';
const bus = { envelope: <T>(type: string, data: T, meta = {}) => makeEnvelope('sensing', type, data, { ...meta, id: '01JFIXEDID0000000000000000' }) };

describe('sensing: metric samples', () => {
  const cases: [string, MetricSource][] = [
    ['a guest', { node: 'node-a', vmid: 1234, resources: { cpu: 0.0123, mem: 34_359_738_368, maxmem: 68_719_476_736, disk: 1.5e9, maxdisk: 8e9, uptime: 77 } }],
    ['a node (no vmid)', { node: 'pve-01', resources: { cpu: 0.5, mem: 1, maxmem: 4, uptime: 3 } }],
    ['missing figures are 0', { node: 'node-b', vmid: 100, resources: {} }],
    ['a name JSON must escape', { node: 'odd"node\\é', vmid: 999_999_999, resources: { cpu: 1000, mem: 0 } }],
  ];
  for (const [what, m] of cases) {
    it(`${what}: the same bytes as the validating encoder, and valid`, () => {
      const subject = subjects.metrics(m.node, m.vmid ?? 'node');
      const bytes = metricSampleBytes(bus, subject, m, ts);
      expect(Buffer.from(bytes).toString()).toBe(Buffer.from(encode(subject, bus.envelope('MetricSample', metricSample(m), { ts }))).toString());
      const d = decode(subject, bytes);
      expect(d.ok && d.env.data).toEqual(metricSample(m));
    });
  }
});
