// homeostat's own actions are not failures, end to end on the twin: an operator's reboot of 159
// (what `homeostat reboot 159` and chat send) and a chat-requested one make sensing see 159 and its
// dependents go down and come back, and no incident opens. A real crash right after still opens one.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../core/mod.ts';
import { replayStored, subjects, type Action, type GuestEvent, type Incident } from '../bus/mod.ts';
import { answerChat } from '../agents/operator/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';

let stack: TestStack;
beforeAll(async () => {
  // real boot times (159 takes 5 s), so sensing certainly sees the reboot
  stack = await testStack({ source: 'own-actions', timeScale: 0.5 });
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

const healthy = async (vmid: number) => (await stack.api.fleet()).guests.find((g) => g.vmid === vmid)?.healthy === true;

async function rebootSeen(t0: Date, actionId: string) {
  await until(async () => {
    const evs = await replayStored(stack.bus, 'fleet.actions.>', t0);
    return evs.some((e) => e.env.type === 'ActionSucceeded' && (e.env.data as Action).actionId === actionId);
  }, 30_000);
  await until(() => healthy(159), 20_000);
  // dependents recover, and the loop's graces run out
  await sleep(3000);
  const guestEvents = (await replayStored(stack.bus, 'fleet.events.guest.>', t0)).map((e) => e.env.data as GuestEvent);
  // the test means something only if sensing saw 159 down or failing on the way
  expect(guestEvents.some((g) => g.vmid === 159 && (g.state !== 'running' || g.health === 'unhealthy'))).toBe(true);
  return (await replayStored(stack.bus, 'fleet.incidents.>', t0)).filter((e) => e.env.type === 'IncidentOpened').map((e) => e.env.data as Incident);
}

describe('own actions are not failures', () => {
  it('an operator reboot of 159 opens no incident', async () => {
    const t0 = new Date();
    const r = await stack.bus.request<{ actionId?: string; verdict: string }>(subjects.cmd('action'), 'Command', { args: { verb: 'reboot', vmid: 159 }, requestedBy: 'cli:test' }, 10_000);
    expect(r.verdict).toBe('allow');
    const opened = await rebootSeen(t0, r.actionId!);
    expect(opened.map((i) => i.title)).toEqual([]);
  }, 90_000);

  it('a chat-requested reboot of 159 opens no incident; a real crash afterwards does', async () => {
    const t0 = new Date();
    const a = await answerChat({ question: 'reboot 159', requestedBy: 'chat:test', confirm: true }, stack.bus, stack.fleet);
    const actionId = a.citations.find((c) => c.startsWith('act-')) ?? (a.data as { actionId?: string } | undefined)?.actionId;
    expect(actionId, a.answer).toBeTruthy();
    const opened = await rebootSeen(t0, actionId!);
    expect(opened.map((i) => i.title)).toEqual([]);

    const t1 = new Date();
    await stack.api.fault('crash', 159);
    const inc = await until(async () => (await replayStored(stack.bus, 'fleet.incidents.>', t1)).find((e) => e.env.type === 'IncidentOpened'), 15_000);
    expect((inc.env.data as Incident).rootCause).toMatchObject({ vmid: 159, reason: 'crashed' });
    await until(() => healthy(159), 30_000);
  }, 120_000);
});
