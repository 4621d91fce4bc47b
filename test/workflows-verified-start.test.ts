// A boot takes the action agent's verified start (running, health check passing) as the guest being
// healthy, not only the workflows' next fleet poll: at 5,000 guests that poll comes every few
// hundred ms, once per layer on the critical path (bench/boot.ts). Here the poll comes once in ten
// minutes: the boot still ends, from the verified starts. Real nats-server, the simulator over HTTP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replayStored, type Action } from '../bus/mod.ts';
import type { BootSummary } from '../state-machines/mod.ts';
import { runWorkflow } from '../workflows/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';

let stack: TestStack;

beforeAll(async () => {
  stack = await testStack({ agents: ['action', 'decision', 'workflows'], source: 'test-verified-start', options: { workflows: { pollMs: 600_000 } } });
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

describe('boot on verified starts', () => {
  it('a layer whose guests were down comes up on the action agent\'s verified starts, one start each', async () => {
    const layer1 = stack.fleet.guests.filter((g) => g.layer === 1).map((g) => g.vmid).sort((a, b) => a - b);
    for (const v of layer1) await stack.api.fault('crash', v);
    const since = new Date();
    const r = await runWorkflow(stack.bus, 'boot', { layer: 1 });
    expect(r.status).toBe('done');
    expect((r.output as BootSummary).healthy).toEqual(layer1);
    for (const v of layer1) expect(await stack.api.health(v)).toBe(true);
    const actions = (await replayStored(stack.bus, 'fleet.actions.>', since)).map((e) => ({ type: e.env.type, a: e.env.data as Action }));
    const succeeded = actions.filter((x) => x.type === 'ActionSucceeded');
    expect(succeeded.map((x) => x.a.target.vmid).sort((a, b) => a - b)).toEqual(layer1);
    for (const x of succeeded) expect(x.a.verified).toBe(true);
  }, 90_000);
});
