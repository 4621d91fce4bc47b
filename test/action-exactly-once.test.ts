// The action agent alone against the simulator over HTTP, on its own nats-server: approved actions
// are published by the test (as the decision agent or a workflow would), PVE tasks are counted
// on the simulator's task list.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../core/mod.ts';
import { Bus, kvGet, kvKeys, sealAction, subjects, type Action, type Envelope } from '../bus/mod.ts';
import { ActionLock } from '../agents/action/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';

let stack: TestStack;
let bus: Bus;
const seen: Envelope<Action>[] = [];
const of = (type: string, actionId: string) => seen.filter((e) => e.type === type && e.data.actionId === actionId);
const waitFor = (type: string, actionId: string, ms = 15_000) => until(() => of(type, actionId)[0]?.data, ms, 25);

let n = 0;
function approved(vmid: number, node: string, verb: Action['verb'] = 'start'): Action {
  return { actionId: `act-test-${Date.now().toString(36)}-${++n}`, verb, target: { vmid, node }, params: {}, proposer: 'workflow', requestedBy: 'test', needsApproval: false };
}
// signed as the decision agent would: the action agent runs nothing else (see test/trust-actions.test.ts)
const publishApproved = (a: Action, msgId = a.actionId) => bus.publish(subjects.action('approved'), 'ActionApproved', sealAction(a, stack.keyring.get('decision').signer, 600_000), { msgId });

async function tasks(node: string, vmid: number, type: string): Promise<{ upid: string; status?: string }[]> {
  const r = await fetch(`${stack.pveUrl}/api2/json/nodes/${node}/tasks?source=all&vmid=${vmid}&typefilter=${type}&limit=500`, {
    headers: { Authorization: `PVEAPIToken=${stack.pveTokenId}=${stack.pveTokenSecret}` },
  });
  return ((await r.json()) as { data: { upid: string; status?: string }[] }).data;
}

beforeAll(async () => {
  // timeScale 0.5: a boot takes long enough (1.5–4 s) to stop the agent in the middle of it
  stack = await testStack({
    agents: ['action'],
    timeScale: 0.5,
    policies: { guestRetries: 2, guestBootTimeoutMs: 15_000 },
    options: { action: { retryBaseMs: 100, ackWaitMs: 3000, leaseMs: 3000 } },
  });
  bus = await Bus.connect({ servers: stack.natsUrl, source: 'test' });
  bus.nc.subscribe('fleet.actions.>', {
    callback: (_e, m) => {
      seen.push(JSON.parse(new TextDecoder().decode(m.data)) as Envelope<Action>);
    },
  });
}, 60_000);
afterAll(async () => {
  await bus?.stop();
  await stack?.stop();
});

describe('action agent', () => {
  it('runs an approved start: ActionStarted with the UPID, then ActionSucceeded verified, causally chained', async () => {
    await stack.api.fault('crash', 102);
    const a = approved(102, 'node-c');
    const env = await publishApproved(a);
    const ok = await waitFor('ActionSucceeded', a.actionId);
    expect(ok.verified).toBe(true);
    expect(await stack.api.health(102)).toBe(true);
    const started = of('ActionStarted', a.actionId);
    expect(started).toHaveLength(1);
    expect(started[0].data.upid).toMatch(/^UPID:node-c:.*:vzstart:102:/);
    expect(started[0].correlationId).toBe(env.correlationId);
    expect(started[0].causationId).toBe(env.id);
    const succeeded = of('ActionSucceeded', a.actionId)[0];
    expect(succeeded.causationId).toBe(started[0].id);
    expect(await kvGet(bus.kv.locks, kvKeys.lock(102), ActionLock)).toBeUndefined();
  });

  it('duplicate deliveries (same msgId twice, and a replay under another msgId) → one PVE task', async () => {
    await stack.api.fault('crash', 155);
    const a = approved(155, 'node-b');
    await publishApproved(a);
    await publishApproved(a); // JetStream drops it: same msgId
    await publishApproved(a, `${a.actionId}-replay`); // stored again: the agent must notice
    await waitFor('ActionSucceeded', a.actionId);
    await publishApproved(a, `${a.actionId}-late-replay`); // after completion: the done marker answers
    await sleep(1500);
    expect(await tasks('node-b', 155, 'vzstart')).toHaveLength(1);
    expect(of('ActionStarted', a.actionId)).toHaveLength(1);
    expect(of('ActionSucceeded', a.actionId)).toHaveLength(1);
    expect(of('ActionFailed', a.actionId)).toHaveLength(0);
  });

  it('killed mid-task and restarted → the stored UPID is resumed: one task, one final success', async () => {
    await stack.api.fault('crash', 243);
    const a = approved(243, 'node-a');
    await publishApproved(a);
    const started = await waitFor('ActionStarted', a.actionId);
    await stack.stopAgent('action');
    const lock = await kvGet(bus.kv.locks, kvKeys.lock(243), ActionLock);
    expect(lock?.value).toMatchObject({ actionId: a.actionId, upid: started.upid, phase: 'task' });
    expect(of('ActionSucceeded', a.actionId)).toHaveLength(0);
    await stack.startAgent('action');
    const ok = await waitFor('ActionSucceeded', a.actionId, 20_000);
    expect(ok).toMatchObject({ verified: true, upid: started.upid });
    expect(await tasks('node-a', 243, 'vzstart')).toHaveLength(1);
    expect(of('ActionStarted', a.actionId)).toHaveLength(1);
  }, 40_000);

  it('a holder that crashed hard (no clean stop) is taken over after its lease: its UPID is waited for, not re-run', async () => {
    await stack.stopAgent('action');
    try {
      await stack.api.fault('crash', 124);
      const a = approved(124, 'node-a');
      // what a crashed holder leaves behind: its lock with the task it had started
      const upid = await stack.pve!.start({ node: 'node-a', vmid: 124, type: 'lxc' });
      const now = Date.now();
      const dead: ActionLock = { actionId: a.actionId, holder: 'dead-host:1:x', expiresAt: now + 1500, vmid: 124, verb: 'start', phase: 'task', attempt: 0, upid, since: now };
      await bus.kv.locks.put(kvKeys.lock(124), JSON.stringify(dead));
      await publishApproved(a);
    } finally {
      await stack.startAgent('action');
    }
    const a = await until(() => seen.find((e) => e.type === 'ActionApproved' && e.data.target.vmid === 124)?.data, 5000);
    const ok = await waitFor('ActionSucceeded', a.actionId, 20_000);
    expect(ok.verified).toBe(true);
    expect(await tasks('node-a', 124, 'vzstart')).toHaveLength(1);
    expect(of('ActionStarted', a.actionId)).toHaveLength(0);
  }, 40_000);

  it('a crash between the PVE call and storing its UPID: the guest is looked at before calling again', async () => {
    await stack.api.fault('crash', 122);
    const a = approved(122, 'node-c');
    await stack.pve!.start({ node: 'node-c', vmid: 122, type: 'lxc' });
    const now = Date.now();
    const dead: ActionLock = { actionId: a.actionId, holder: 'dead-host:2:y', expiresAt: 0, vmid: 122, verb: 'start', phase: 'calling', attempt: 0, since: now };
    await bus.kv.locks.put(kvKeys.lock(122), JSON.stringify(dead));
    await until(async () => (await stack.api.fleet()).guests.find((g) => g.vmid === 122)?.status === 'running', 10_000);
    await publishApproved(a);
    const ok = await waitFor('ActionSucceeded', a.actionId, 20_000);
    expect(ok.verified).toBe(true);
    expect(await tasks('node-c', 122, 'vzstart')).toHaveLength(1);
  }, 40_000);

  it('PVE api-error during remediation → retried per policy, then ActionFailed with the PVE error', async () => {
    await stack.api.fault('crash', 289);
    const f = await stack.api.fault('api-error', 'node-a');
    try {
      const a = approved(289, 'node-a');
      await publishApproved(a);
      const failed = await waitFor('ActionFailed', a.actionId, 30_000);
      expect(failed.error?.code).toBe('HOMEOSTAT_ERR_PVE_UNAVAILABLE');
      expect(failed.error?.message).toMatch(/500|PVE/);
      expect(failed.attempt).toBe(2); // guestRetries: 2 → attempts 0, 1, 2
      expect(of('ActionStarted', a.actionId)).toHaveLength(0);
    } finally {
      await stack.api.heal(f.id);
    }
    expect(await tasks('node-a', 289, 'vzstart')).toHaveLength(0);
  }, 40_000);

  it('an action that needs approval but carries none is refused', async () => {
    const a = { ...approved(101, 'node-c'), needsApproval: true };
    await publishApproved(a);
    const failed = await waitFor('ActionFailed', a.actionId);
    expect(failed.error?.code).toBe('HOMEOSTAT_ERR_POLICY_DENIED');
  });

  it('a second action on a locked guest waits for the first, then runs', async () => {
    await stack.api.fault('crash', 120);
    const first = approved(120, 'node-b');
    const second = approved(120, 'node-b', 'reboot');
    await publishApproved(first);
    await waitFor('ActionStarted', first.actionId);
    await publishApproved(second);
    await waitFor('ActionSucceeded', first.actionId);
    const ok = await waitFor('ActionSucceeded', second.actionId, 20_000);
    expect(ok.verified).toBe(true);
    const t1 = seen.findIndex((e) => e.type === 'ActionSucceeded' && e.data.actionId === first.actionId);
    const t2 = seen.findIndex((e) => e.type === 'ActionStarted' && e.data.actionId === second.actionId);
    expect(t2).toBeGreaterThan(t1);
  }, 40_000);
});
