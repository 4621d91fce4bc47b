// The action agent's bound on actions in flight counts the PVE part of an action, not the wait for
// a started guest to boot: with one action at a time, a second start runs while the first guest
// is still being verified healthy, and both end verified. Real nats-server, the simulator over HTTP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus, sealAction, subjects, type Action, type Envelope } from '../bus/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';

let stack: TestStack;
let bus: Bus;
const seen: Envelope<Action>[] = [];
const at = (type: string, actionId: string) => seen.findIndex((e) => e.type === type && e.data.actionId === actionId);

let n = 0;
const approved = (vmid: number, node: string): Action =>
  ({ actionId: `act-inflight-${Date.now().toString(36)}-${++n}`, verb: 'start', target: { vmid, node }, params: {}, proposer: 'workflow', requestedBy: 'test', needsApproval: false });
const publishApproved = (a: Action) => bus.publish(subjects.action('approved'), 'ActionApproved', sealAction(a, stack.keyring.get('decision').signer, 600_000), { msgId: a.actionId });

beforeAll(async () => {
  stack = await testStack({ agents: ['action'], timeScale: 0.5, policies: { guestBootTimeoutMs: 30_000 }, options: { action: { maxInFlight: 1 } } });
  bus = await Bus.connect({ servers: stack.natsUrl, source: 'test' });
  bus.nc.subscribe('fleet.actions.>', { callback: (_e, m) => void seen.push(JSON.parse(new TextDecoder().decode(m.data)) as Envelope<Action>) });
  await bus.nc.flush();
}, 60_000);
afterAll(async () => {
  await bus?.stop();
  await stack?.stop();
});

describe('actions in flight', () => {
  it('one at a time: a start verifying its guest (4 s boot) lets the next start run', async () => {
    await stack.api.fault('crash', 243); // ollama-server: 8 s boot, 4 s here
    await stack.api.fault('crash', 101); // omada21: 1.5 s here
    const slow = approved(243, 'node-a');
    const quick = approved(101, 'node-c');
    await publishApproved(slow);
    await publishApproved(quick);
    await until(() => at('ActionSucceeded', slow.actionId) >= 0 && at('ActionSucceeded', quick.actionId) >= 0, 30_000, 25);
    // the second started (its PVE task) before the first guest was verified healthy
    expect(at('ActionStarted', slow.actionId)).toBeLessThan(at('ActionStarted', quick.actionId));
    expect(at('ActionStarted', quick.actionId)).toBeLessThan(at('ActionSucceeded', slow.actionId));
    for (const a of [slow, quick]) expect(seen[at('ActionSucceeded', a.actionId)].data.verified).toBe(true);
    expect(seen.filter((e) => e.type === 'ActionFailed')).toEqual([]);
    expect(await stack.api.health(243)).toBe(true);
    expect(await stack.api.health(101)).toBe(true);
  }, 60_000);
});
