// Exactly once across processes: two action agents, each approved action delivered to both (and
// replayed under other msgIds), and still one PVE task per action.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus, sealAction, subjects, type Action, type Envelope } from '../bus/mod.ts';
import { createLogger, sleep } from '../core/mod.ts';
import { loadAgent, loadConfig, type ActionOptions, type AgentHandle } from '../agents/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';

let stack: TestStack;
let second: { bus: Bus; handle: AgentHandle } | undefined;
const seen: Envelope<Action>[] = [];

const action: ActionOptions = { retryBaseMs: 100, ackWaitMs: 3000, leaseMs: 3000 };

/** A second action agent on its own connection and its own durable: it sees every approved action too. */
async function startSecondAgent(): Promise<{ bus: Bus; handle: AgentHandle }> {
  const mod = await loadAgent('action');
  const log = createLogger(process.env.TEST_LOG_LEVEL ?? 'silent').child({ agent: 'action-2' });
  const bus = await Bus.connect({ servers: stack.natsUrl, source: 'action', log });
  const handle = await mod.start({
    name: 'action', config: loadConfig({ LOG_LEVEL: 'silent' }), log, bus, fleet: stack.fleet, pve: stack.pve, pveAccess: stack.pveAccess,
    options: { ...action, durableSuffix: '-second', decisionKeys: [stack.keyring.get('decision').publicKey] },
  });
  return { bus, handle };
}

async function tasks(node: string, vmid: number, type: string): Promise<unknown[]> {
  const r = await fetch(`${stack.pveUrl}/api2/json/nodes/${node}/tasks?source=all&vmid=${vmid}&typefilter=${type}&limit=500`, {
    headers: { Authorization: `PVEAPIToken=${stack.pveTokenId}=${stack.pveTokenSecret}` },
  });
  return ((await r.json()) as { data: unknown[] }).data;
}

beforeAll(async () => {
  stack = await testStack({ agents: ['action'], timeScale: 0.2, policies: { guestRetries: 1 }, options: { action } });
  second = await startSecondAgent();
  stack.bus.nc.subscribe('fleet.actions.>', { callback: (_e, m) => void seen.push(JSON.parse(new TextDecoder().decode(m.data)) as Envelope<Action>) });
}, 60_000);
afterAll(async () => {
  await second?.handle.stop();
  await second?.bus.stop();
  await stack?.stop();
});

describe('two action agents', () => {
  it('3 rounds of reboots, each delivered to both agents and replayed: 0 doubled', async () => {
    const guests = stack.fleet.guests.filter((g) => !g.protected).slice(0, 3);
    for (let round = 0; round < 3; round++) {
      const actions: Action[] = guests.map((g) => ({
        actionId: `act-replica-${round}-${g.vmid}-${Date.now().toString(36)}`, verb: 'reboot', target: { vmid: g.vmid, node: g.node }, params: {},
        proposer: 'workflow', requestedBy: 'test', needsApproval: false,
      }));
      for (const unsigned of actions) {
        const a = sealAction(unsigned, stack.keyring.get('decision').signer, 600_000); // as the decision agent does
        await stack.bus.publish(subjects.action('approved'), 'ActionApproved', a, { msgId: a.actionId });
        await stack.bus.publish(subjects.action('approved'), 'ActionApproved', a, { msgId: `${a.actionId}-replay` });
      }
      for (const a of actions) await until(() => seen.some((e) => e.type === 'ActionSucceeded' && e.data.actionId === a.actionId), 30_000, 50);
    }
    await sleep(1500); // late duplicates would have started by now
    for (const g of guests) {
      const type = g.type === 'qemu' ? 'qmreboot' : 'vzreboot';
      expect(await tasks(g.node, g.vmid, type), `reboot tasks of ${g.vmid}`).toHaveLength(3);
    }
    expect(seen.filter((e) => e.type === 'ActionFailed')).toHaveLength(0);
  }, 120_000);
});
