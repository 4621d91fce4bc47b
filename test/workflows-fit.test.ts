// A workflow's output must fit in one NATS message (the ENDED event, the `fleet.cmd.workflow`
// reply): a 5,000-guest summary's per-guest reasons do not, so they are left to the KV record.
import { describe, expect, it } from 'vitest';
import { fitForMessage } from '../workflows/mod.ts';

const summary = (n: number) => ({
  workflowId: 'shutdown-x', stopped: [1], stuck: Array.from({ length: n }, (_, i) => 1000 + i), held: [],
  reasons: Object.fromEntries(Array.from({ length: n }, (_, i) => [1000 + i, `hard stop failed: stop failed: HOMEOSTAT_ERR_INTERNAL: timeout ${i}`])),
  plan: { waves: [Array.from({ length: n }, (_, i) => 1000 + i)], blocked: [] },
});

describe('fitForMessage', () => {
  it('leaves a small output as it is', () => {
    const s = summary(12);
    expect(fitForMessage(s)).toBe(s);
    expect(fitForMessage({ status: 'failed', output: s })).toEqual({ status: 'failed', output: s });
  });

  it('drops reasons and plan of a 5,000-guest output, keeping the lists, and says so', () => {
    const big = summary(5000);
    expect(JSON.stringify(big).length).toBeGreaterThan(256 * 1024);
    const fit = fitForMessage({ status: 'failed', output: big }) as { status: string; output: Record<string, unknown> };
    expect(JSON.stringify(fit).length).toBeLessThan(256 * 1024);
    expect(fit.status).toBe('failed');
    expect(fit.output.stuck).toEqual(big.stuck);
    expect(fit.output).not.toHaveProperty('reasons');
    expect(fit.output).not.toHaveProperty('plan');
    expect(String(fit.output.omitted)).toMatch(/reasons and plan/);
    expect(fitForMessage(big)).not.toHaveProperty('reasons');
  });
});
