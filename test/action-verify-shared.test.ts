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
  it('looks at every watched guest in one call per round until each is healthy, each its own answer', async () => {
    const asked: number[][] = [];
    let round = 0;
    // guest 1 healthy from the first round, 2 from the second, 3 never answered
    const looks = new SharedLooks(async (vmids) => {
      asked.push([...vmids]);
      round++;
      return new Map(vmids.filter((v) => v !== 3).map((v) => [v, v === 1 || round >= 2 ? { ok: true } : { ok: false, reason: `booting ${v}` }]));
    }, 10);
    const never = new AbortController();
    const [one, two, twoAgain] = await Promise.all([looks.until(1, 60_000, never.signal), looks.until(2, 60_000, never.signal), looks.until(2, 60_000, never.signal)]);
    expect([one, two, twoAgain]).toEqual([{ ok: true }, { ok: true }, { ok: true }]);
    expect(asked).toEqual([[1, 2], [2]]);
    // not healthy by its deadline: the last answer, and nobody is looked at after that
    expect(await looks.until(3, 50, never.signal)).toEqual({ ok: false, reason: 'no answer' });
    const rounds = looks.rounds;
    await new Promise((r) => setTimeout(r, 50));
    expect(looks.rounds).toBe(rounds);
    // an abort ends the watch with the abort's reason
    const ac = new AbortController();
    const watched = looks.until(3, 60_000, ac.signal);
    ac.abort(new Error('agent stopping'));
    await expect(watched).rejects.toThrow('agent stopping');
    // a call that fails: not healthy, with the reason
    const failing = new SharedLooks(() => Promise.reject(new Error('connect ECONNREFUSED')), 10);
    expect(await failing.until(7, 30, never.signal)).toEqual({ ok: false, reason: 'connect ECONNREFUSED' });
  });
});
