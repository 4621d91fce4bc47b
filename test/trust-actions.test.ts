// Only actions signed by the decision agent run. Forged, replayed, expired and unsigned actions
// published straight on the real bus reach the action agent and are refused: dead-lettered with
// the reason, an ActionRejected audit event each, and no PVE task.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newSigner, sealAction, subjects, type Action, type DeadLetter, type Envelope } from '../bus/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';

let stack: TestStack;
const seen: { subject: string; env: Envelope<unknown> }[] = [];
let n = 0;

const action = (vmid: number, node: string, verb: Action['verb'] = 'shutdown'): Action => ({
  actionId: `act-trust-${Date.now().toString(36)}-${++n}`, verb, target: { vmid, node }, params: {}, proposer: 'runbook', requestedBy: 'attacker', needsApproval: false,
});
const publish = (a: Action, msgId = a.actionId) => stack.bus.publish(subjects.action('approved'), 'ActionApproved', a, { msgId });
const decisionKey = () => stack.keyring.get('decision').signer;
const rejected = (actionId: string) => until(() => seen.find((s) => s.env.type === 'ActionRejected' && (s.env.data as Action).actionId === actionId)?.env.data as Action | undefined, 15_000, 25);
const deadLetter = (actionId: string) => until(() => seen.find((s) => s.subject === `fleet.dlq.${subjects.action('approved')}` && (s.env.data as DeadLetter).raw.includes(actionId))?.env.data as DeadLetter | undefined, 15_000, 25);

async function tasks(node: string, vmid: number): Promise<unknown[]> {
  const r = await fetch(`${stack.pveUrl}/api2/json/nodes/${node}/tasks?source=all&vmid=${vmid}&limit=500`, {
    headers: { Authorization: `PVEAPIToken=${stack.pveTokenId}=${stack.pveTokenSecret}` },
  });
  return ((await r.json()) as { data: unknown[] }).data;
}

beforeAll(async () => {
  stack = await testStack({ agents: ['action'], options: { action: { ackWaitMs: 3000, leaseMs: 3000 } } });
  stack.bus.nc.subscribe('fleet.>', { callback: (_e, m) => void seen.push({ subject: m.subject, env: JSON.parse(new TextDecoder().decode(m.data)) as Envelope<unknown> }) });
  await stack.bus.nc.flush();
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

describe('the action agent runs only what the decision agent signed', () => {
  it('unsigned: dead-lettered with the reason, ActionRejected, the guest keeps running', async () => {
    const before = (await tasks('node-a', 100)).length;
    const a = action(100, 'node-a');
    await publish(a);
    expect((await rejected(a.actionId)).error).toMatchObject({ code: 'HOMEOSTAT_ERR_ACTION_REJECTED', message: expect.stringMatching(/^unsigned/) });
    expect((await deadLetter(a.actionId)).reason).toMatch(/unsigned/);
    expect(await tasks('node-a', 100)).toHaveLength(before);
    expect((await stack.api.fleet()).guests.find((g) => g.vmid === 100)?.status).toBe('running');
  });

  it('forged: signed by a key the action agent does not trust, or a signed action altered after signing', async () => {
    const stranger = action(120, 'node-b');
    await publish(sealAction(stranger, newSigner(), 600_000));
    expect((await rejected(stranger.actionId)).error?.message).toMatch(/^untrusted/);

    const genuine = sealAction(action(120, 'node-b', 'start'), decisionKey(), 600_000);
    const altered: Action = { ...genuine, verb: 'stop' }; // the decision agent approved a start
    await publish(altered);
    expect((await rejected(altered.actionId)).error?.message).toMatch(/^forged/);
    expect((await deadLetter(altered.actionId)).reason).toMatch(/forged/);
    expect(seen.some((s) => s.env.type === 'ActionStarted' && [stranger.actionId, altered.actionId].includes((s.env.data as Action).actionId))).toBe(false);
  });

  it('expired: a genuine seal past its expiry does not start', async () => {
    const a = sealAction(action(122, 'node-c'), decisionKey(), 1000, Date.now() - 5000);
    await publish(a);
    expect((await rejected(a.actionId)).error?.message).toMatch(/^expired/);
    expect((await deadLetter(a.actionId)).reason).toMatch(/expired/);
  });

  it('replayed: a genuine action runs once; the same action under another message id is refused', async () => {
    await stack.api.fault('crash', 124);
    await until(async () => (await stack.api.fleet()).guests.find((g) => g.vmid === 124)?.status === 'stopped', 10_000);
    const a = sealAction(action(124, 'node-a', 'start'), decisionKey(), 600_000);
    await publish(a);
    await until(() => seen.some((s) => s.env.type === 'ActionSucceeded' && (s.env.data as Action).actionId === a.actionId), 20_000, 25);
    const starts = (await tasks('node-a', 124)).length;
    await publish(a, `${a.actionId}-again`); // a copy an attacker kept, past JetStream's dedup id
    expect((await rejected(a.actionId)).error?.message).toMatch(/^replayed/);
    expect((await deadLetter(a.actionId)).reason).toMatch(/replayed/);
    expect(await tasks('node-a', 124)).toHaveLength(starts);
  }, 40_000);
});
