import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { findExperiment, listExperiments, loadExperimentFile, parseExperiment } from '../workflows/experiment.ts';

const fleet = referenceFleet();

describe('chaos experiment files', () => {
  it('ships the five reference experiments, all valid', () => {
    const list = listExperiments(fleet);
    expect(list.map((e) => e.name).sort()).toEqual(['api-brownout', 'flapping-guest', 'hang-database', 'kill-layer1', 'lose-node-b']);
    for (const e of list) expect(e.error, e.name).toBeUndefined();
    expect(findExperiment('lose-node-b', fleet).method[0]).toMatchObject({ fault: 'node-down', target: 'node-b' });
  });

  const base = { name: 'x', steadyState: [{ probe: 'all-guests-healthy' }], method: [{ fault: 'crash', target: 101 }] };
  it.each([
    [{ ...base, name: 'Bad Name' }, /name: expected a lowercase name/],
    [{ ...base, method: [{ fault: 'explode', target: 101 }] }, /method\[0\]\.fault: /],
    [{ ...base, method: [] }, /method: expected at least one fault/],
    [{ ...base, steadyState: [{ probe: 'vibes' }] }, /steadyState\[0\]\.probe/],
    [{ ...base, method: [{ fault: 'crash', target: 999 }] }, /method\[0\]\.target: unknown guest/],
    [{ ...base, method: [{ fault: 'crash', target: 200 }] }, /method\[0\]\.target: homeassistant \(200\) is protected/],
    [{ ...base, method: [{ fault: 'node-down', target: 'node-b' }] }, /method\[0\]\.target: node-level fault needs blastRadius\.allowNodeFaults/],
    [{ ...base, method: [{ fault: 'node-down', target: 'node-b' }], blastRadius: { allowNodeFaults: true } }, /blastRadius\.maxGuests: the method touches 5 guests/],
    [{ ...base, slo: { mttrMs: 'fast' } }, /slo\.mttrMs: /],
  ])('rejects %o naming the field', (input, re) => {
    expect(() => parseExperiment(input, fleet, 'x.yaml')).toThrow(re);
  });

  it('a file with bad YAML or a missing file is a clear error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'exp-'));
    writeFileSync(join(dir, 'bad.yaml'), 'name: [unclosed');
    expect(() => loadExperimentFile(join(dir, 'bad.yaml'), fleet)).toThrow(/bad\.yaml: not valid YAML/);
    expect(() => loadExperimentFile(join(dir, 'nope.yaml'), fleet)).toThrow(/no such file/);
    expect(() => findExperiment('nope', fleet)).toThrow(/HOMEOSTAT_ERR_NOT_FOUND|no experiment "nope"/);
  });
});
