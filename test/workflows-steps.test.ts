// The bound on steps in flight (HOMEOSTAT_WORKFLOW_STEPS): a boot with more guests ready at once
// than the bound waits in line instead of timing out, starts every guest exactly once, and never
// has more than the bound in flight. Real nats-server, the simulator over HTTP, every agent.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runWorkflow } from '../workflows/mod.ts';
import { StepQueue } from '../state-machines/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';

const CAP = 2;
let stack: TestStack;
const queue = new StepQueue(CAP);

beforeAll(async () => {
  stack = await testStack({ source: 'test-workflows-steps', options: { workflows: { steps: queue } } });
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

/** Start tasks PVE (the simulator) ran per guest, from each node's task list. */
async function startTasks(): Promise<Map<number, number>> {
  const out = new Map<number, number>();
  for (const n of stack.fleet.nodes) {
    const r = await fetch(`${stack.pveUrl}/api2/json/nodes/${n.name}/tasks?typefilter=vzstart&limit=1000&source=all`, { headers: { Authorization: `PVEAPIToken=${stack.pveTokenId}=${stack.pveTokenSecret}` } });
    const body = (await r.json()) as { data: { id: string }[] };
    for (const t of body.data) out.set(Number(t.id), (out.get(Number(t.id)) ?? 0) + 1);
  }
  return out;
}

describe('steps in flight are bounded', () => {
  it(`a shutdown and a boot of more guests than the bound (${CAP}) complete, each guest started once, never more than ${CAP} steps in flight`, async () => {
    const down = await runWorkflow(stack.bus, 'shutdown', {});
    expect(down.status).toBe('done');
    const stopped = (await stack.api.fleet()).guests.filter((g) => g.status === 'stopped').map((g) => g.vmid).sort((a, b) => a - b);
    expect(stopped.length).toBeGreaterThan(CAP * 2);

    const before = await startTasks();
    const boot = await runWorkflow(stack.bus, 'boot', {});
    expect(boot.status).toBe('done');
    const after = await startTasks();
    const started = stopped.map((vmid) => (after.get(vmid) ?? 0) - (before.get(vmid) ?? 0));
    expect(started).toEqual(stopped.map(() => 1));
    expect((await stack.api.fleet()).guests.filter((g) => stopped.includes(g.vmid) && g.status !== 'running')).toEqual([]);

    // the bound held, was reached (steps did wait in line), and every place was given back
    expect(queue.peak).toBe(CAP);
    expect(queue.inFlight).toBe(0);
    expect(queue.queued).toBe(0);
  }, 180_000);
});
