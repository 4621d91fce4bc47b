// Verifying does not hold one of the action agent's places: a start gives its place to the next
// approved action once its PVE task is done, and keeps its guest lock until the guest is verified
// running and healthy. Looks at the guests verifying at once are shared (one simulator call for
// many guests). Real nats-server, the simulator over HTTP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sealAction, subjects, type Action, type Envelope } from '../bus/mod.ts';
import { SharedLooks } from '../agents/action/verify.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';

let stack: TestStack;
const seen: Envelope<Action>[] = [];

beforeAll(async () => {
  // one place: before, each start held it for its guest's whole boot
  stack = await testStack({ agents: ['action'], timeScale: 1, options: { action: { maxInFlight: 1 } } });
  stack.bus.nc.subscribe('fleet.actions.>', { callback: (_e, m) => void seen.push(JSON.parse(new TextDecoder().decode(m.data)) as Envelope<Action>) });
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

const approve = (a: Action) => stack.bus.publish(subjects.action('approved'), 'ActionApproved', sealAction(a, stack.keyring.get('decision').signer, 600_000), { msgId: a.actionId });

describe('verifying actions', () => {
  it('give their place to the next start and are each verified on their own, one action per guest', async () => {
    // boots of 8, 5 and 4 s: a start held its one place that long before
    const guests = [{ vmid: 243, node: 'node-a' }, { vmid: 159, node: 'node-b' }, { vmid: 124, node: 'node-a' }];
    for (const g of guests) await stack.api.fault('crash', g.vmid);
    const tag = Date.now();
    const starts: Action[] = guests.map((g) => ({ actionId: `act-park-${g.vmid}-${tag}`, verb: 'start', target: g, params: {}, proposer: 'workflow', requestedBy: 'test', needsApproval: false }));
    for (const a of starts) await approve(a);
    const ours = (type: string) => seen.filter((e) => e.type === type && e.data.actionId.endsWith(`-${tag}`));
    await until(() => ours('ActionSucceeded').length + ours('ActionFailed').length === 3 || undefined, 90_000, 50);
    expect(ours('ActionFailed')).toEqual([]);
    const order = seen.filter((e) => e.data.actionId.endsWith(`-${tag}`)).map((e) => e.type);
    // every start ran its PVE task while the first guest was still booting
    expect(order.lastIndexOf('ActionStarted')).toBeLessThan(order.indexOf('ActionSucceeded'));
    for (const e of ours('ActionSucceeded')) expect(e.data.verified).toBe(true);
    // verified means healthy: each guest serves now, and no guest lock is left behind
    for (const g of guests) expect(await stack.api.health(g.vmid)).toBe(true);
    for await (const k of await stack.bus.kv.locks.keys('guest.>')) expect(k).toBeUndefined();
  }, 120_000);
});

describe('SharedLooks', () => {
  it('answers the looks asked within one round with one call, each guest its own answer', async () => {
    const asked: number[][] = [];
    const looks = new SharedLooks(async (vmids) => {
      asked.push([...vmids]);
      return new Map(vmids.filter((v) => v !== 3).map((v) => [v, v % 2 ? { ok: true } : { ok: false, reason: `booting ${v}` }]));
    }, 10);
    const first = await Promise.all([looks.look(1), looks.look(2), looks.look(3), looks.look(2)]);
    expect(asked).toEqual([[1, 2, 3]]);
    expect(first).toEqual([{ ok: true }, { ok: false, reason: 'booting 2' }, { ok: false, reason: 'no answer' }, { ok: false, reason: 'booting 2' }]);
    // a call that fails: every guest of the round is "not healthy", with the reason
    const failing = new SharedLooks(() => Promise.reject(new Error('connect ECONNREFUSED')), 10);
    expect(await Promise.all([failing.look(7), failing.look(8)])).toEqual([{ ok: false, reason: 'connect ECONNREFUSED' }, { ok: false, reason: 'connect ECONNREFUSED' }]);
    expect(failing.rounds).toBe(1);
  });
});
