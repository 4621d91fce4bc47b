// The whole loop on a real nats-server and the simulator over HTTP: a fault in the twin, and
// homeostat notices, decides, acts once, verifies, and can explain it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus, replayStored, type Action } from '../bus/mod.ts';
import { traceIncident, answerChat } from '../agents/operator/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';

let stack: TestStack;
let bus: Bus;
beforeAll(async () => {
  stack = await testStack({ source: 'e2e' });
  bus = stack.bus;
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

const healthy = async (vmid: number) => (await stack.api.fleet()).guests.find((g) => g.vmid === vmid)?.healthy === true;

describe('self-healing loop', () => {
  it('crash → incident → start → verified healthy, explained by trace and chat', async () => {
    const t0 = new Date();
    await stack.api.fault('crash', 159);
    await until(async () => !(await healthy(159)), 5000);
    await until(() => healthy(159), 20_000);
    // exactly one start task for 159
    const actions = await until(async () => {
      const evs = (await replayStored(bus, 'fleet.actions.>', t0)).filter((e) => (e.env.data as Action).target?.vmid === 159);
      return evs.some((e) => e.env.type === 'ActionSucceeded') ? evs : undefined;
    }, 15_000);
    const started = actions.filter((e) => e.env.type === 'ActionStarted');
    expect(started).toHaveLength(1);
    expect((started[0].env.data as Action).verb).toBe('start');
    const done = actions.find((e) => e.env.type === 'ActionSucceeded')!.env.data as Action;
    expect(done.verified).toBe(true);

    const incidentId = done.incidentId!;
    expect(incidentId).toBeTruthy();
    const trace = await traceIncident(bus, incidentId);
    const steps = trace.entries.map((e) => e.step);
    for (const s of ['event', 'alert', 'incident', 'decision', 'action', 'task', 'verification']) expect(steps, s).toContain(s);
    expect(steps.indexOf('event')).toBeLessThan(steps.indexOf('incident'));
    expect(steps.indexOf('decision')).toBeLessThan(steps.indexOf('verification'));

    const a = await answerChat({ question: 'why is 159 down?', requestedBy: 'test', confirm: false }, bus, stack.fleet);
    expect(a.citations).toContain(incidentId);
    expect(a.answer).toMatch(/db-empleos|159/);
  }, 60_000);
});
