// End to end on the twin with a real nats-server: a protected guest crashes, the loop asks for an
// approval, and the notify agent tells a local webhook once for the whole incident (every message
// of the group window in one notification, none again after a restart of the agent); when the
// approval times out, the next notification says so (the approval ended, the fix did not happen).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replayStored, type Action } from '../bus/mod.ts';
import { sleep } from '../core/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';
import { startHttpReceiver, type HttpReceiver } from './helpers/http-receiver.ts';
import { runCli } from './helpers/cli.ts';
import type { SelfCheck } from '../cli/self-check.ts';

interface Posted {
  status: string;
  groupKey: string;
  title: string;
  items: { key: string; kind: string; status: string; hint?: string; resolution?: string; actionId?: string; vmid?: number }[];
}

const PROTECTED = 200; // homeassistant: protected in the reference fleet
const GROUP_WAIT_MS = 2000;

let stack: TestStack;
let hook: HttpReceiver;
beforeAll(async () => {
  hook = await startHttpReceiver();
  stack = await testStack({
    source: 'notify-e2e',
    policies: { approvalTimeoutMs: 12_000 },
    env: { HOMEOSTAT_NOTIFY: `${hook.url}/homeostat?name=ops`, HOMEOSTAT_NOTIFY_GROUP_WAIT_MS: String(GROUP_WAIT_MS), HOMEOSTAT_NOTIFY_GROUP_INTERVAL_MS: '1500' },
    options: { notify: { tickMs: 100 }, heartbeat: { heartbeatMs: 300 } },
  });
}, 60_000);
afterAll(async () => {
  await stack?.stop();
  await hook?.close();
});

const posted = () => hook.requests.map((r) => JSON.parse(r.body) as Posted);

describe('notifications end to end', () => {
  it('a protected guest crashes: one approval-waiting notification for the incident, then its timeout', async () => {
    const t0 = new Date();
    await stack.api.fault('crash', PROTECTED);
    const requestedEnv = await until(async () => {
      const evs = await replayStored(stack.bus, 'fleet.actions.requested', t0);
      return evs.find((e) => (e.env.data as Action).target.vmid === PROTECTED && (e.env.data as Action).needsApproval)?.env;
    }, 15_000, 100, 'an approval request for the protected guest');
    const requested = requestedEnv.data as Action;

    await until(() => hook.requests.length > 0, 10_000, 50, 'the first notification');
    const first = posted()[0];
    expect(first).toMatchObject({ status: 'firing', groupKey: `incident:${requested.incidentId}` });
    expect(first.items).toEqual([expect.objectContaining({ key: `approval:${requested.actionId}`, kind: 'approval', status: 'firing', vmid: PROTECTED, hint: `homeostat approve ${requested.actionId}  (or: homeostat deny ${requested.actionId})` })]);
    expect(first.title).toMatch(/^Approval waiting: start homeassistant \(200\)/);
    // the group waited for more of the same incident before telling anyone
    expect(Date.parse((first as Posted & { sentAt: string }).sentAt) - Date.parse(requestedEnv.ts)).toBeGreaterThanOrEqual(GROUP_WAIT_MS);
    // the incident sent several messages the agent reads (incident, decision, approval request) in the window
    const seen = (await replayStored(stack.bus, 'fleet.>', t0)).filter((e) => /^fleet\.(incidents|decisions|actions)\./.test(e.subject) && JSON.stringify(e.env.data).includes(requested.incidentId!));
    expect(seen.length).toBeGreaterThanOrEqual(3);

    // a restart of the notify agent sends nothing again (the group's state is in KV)
    await stack.stopAgent('notify');
    await stack.startAgent('notify');
    await sleep(GROUP_WAIT_MS + 500);
    expect(hook.requests).toHaveLength(1);

    // nobody approves: the approval times out; both changes (approval ended, fix not done) in one notification
    await until(() => hook.requests.length > 1, 20_000, 100, 'the notification after the approval timed out');
    await sleep(2000);
    expect(hook.requests).toHaveLength(2);
    const second = posted()[1];
    expect(second.status).toBe('firing');
    expect(second.items.map((i) => [i.key, i.status])).toEqual([[`denied:${requested.actionId}`, 'firing'], [`approval:${requested.actionId}`, 'resolved']]);
    expect(second.items[1].resolution).toMatch(/^denied by policy:approval-timeout/);

    // doctor shows the notifier's health (by its name) from the notify agent's heartbeat
    const check = await until(async () => {
      const r = await runCli(['doctor', '--json'], { NATS_URL: stack.natsUrl, HOMEOSTAT_DATA_DIR: '/nonexistent' });
      const c = (JSON.parse(r.out) as SelfCheck).checks.find((x) => x.name === 'notifiers');
      return c?.status === 'ok' && /delivered/.test(c.summary) ? c : undefined;
    }, 15_000, 300, 'the notifier in doctor');
    expect(check.summary).toBe('notifiers: ops — 1 delivered their last notification');
    expect(JSON.stringify(check.data)).not.toContain(hook.url);
  }, 90_000);
});
