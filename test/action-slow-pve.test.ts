// Actions idempotent against PVE: when PVE answers slower than the client's timeout, a state-
// changing POST is never sent again blindly; the agent finds the task it started (task list) and
// carries on. One decision → one PVE task, whatever the latency.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealAction, subjects, type Action, type Envelope } from '../bus/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';

let stack: TestStack;
const seen: Envelope<Action>[] = [];

async function tasks(node: string, vmid: number, type: string): Promise<unknown[]> {
  const r = await fetch(`${stack.pveUrl}/api2/json/nodes/${node}/tasks?source=all&vmid=${vmid}&typefilter=${type}&limit=500`, {
    headers: { Authorization: `PVEAPIToken=${stack.pveTokenId}=${stack.pveTokenSecret}` },
  });
  return ((await r.json()) as { data: unknown[] }).data;
}

beforeAll(async () => {
  // the client gives up on an answer after 400 ms; PVE will take 700 ms for every call
  stack = await testStack({ agents: ['action'], timeScale: 0.2, env: { PVE_TIMEOUT_MS: '400' }, policies: { guestRetries: 2 }, options: { action: { retryBaseMs: 100 } } });
  stack.bus.nc.subscribe('fleet.actions.>', { callback: (_e, m) => void seen.push(JSON.parse(new TextDecoder().decode(m.data)) as Envelope<Action>) });
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

// sealed as the decision agent does: the action agent runs nothing else
const approve = (a: Action) => stack.bus.publish(subjects.action('approved'), 'ActionApproved', sealAction(a, stack.keyring.get('decision').signer, 600_000), { msgId: a.actionId });
const outcome = (id: string) => until(() => seen.find((e) => (e.type === 'ActionSucceeded' || e.type === 'ActionFailed') && e.data.actionId === id), 60_000, 50);

describe('PVE slower than the client timeout', () => {
  it('a reboot and a start: one PVE task each, and both verified', async () => {
    await stack.api.fault('crash', 120);
    const slow = await stack.api.fault('api-slow', '*', undefined, { delayMs: 700 });
    try {
      const reboot: Action = { actionId: `act-slow-reboot-${Date.now()}`, verb: 'reboot', target: { vmid: 101, node: 'node-c' }, params: {}, proposer: 'workflow', requestedBy: 'test', needsApproval: false };
      const start: Action = { actionId: `act-slow-start-${Date.now()}`, verb: 'start', target: { vmid: 120, node: 'node-b' }, params: {}, proposer: 'workflow', requestedBy: 'test', needsApproval: false };
      await approve(reboot);
      await approve(start);
      const [r, s] = await Promise.all([outcome(reboot.actionId), outcome(start.actionId)]);
      expect(await tasks('node-c', 101, 'vzreboot')).toHaveLength(1);
      expect(await tasks('node-b', 120, 'vzstart')).toHaveLength(1);
      expect(r.type).toBe('ActionSucceeded');
      expect(s.type).toBe('ActionSucceeded');
    } finally {
      await stack.api.heal(slow.id);
    }
  }, 120_000);
});
