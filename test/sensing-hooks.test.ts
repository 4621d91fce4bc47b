// Push detection end to end: the twin runs the shipped deploy/pve/homeostat-hook on every phase,
// it reports to sensing's receiver (/pve/hook), sensing polls at once and publishes what the API
// confirms. The sense interval is 30 s here, so only the hook can explain a change seen in time;
// the receiver refuses bad reports and, with a token configured, unauthenticated ones.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Envelope, GuestEvent } from '../bus/mod.ts';
import type { SensingHandle } from '../agents/sensing/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';

const TOKEN = 'hook-token-0123456789abcdef';
// the shipped hookscript reports with curl or wget, as on a PVE node
const haveClient = ['curl', 'wget'].some((c) => {
  try {
    execFileSync('sh', ['-c', `command -v ${c}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
});
if (!haveClient) console.warn('sensing-hooks: skipped, neither curl nor wget is installed (apt-get install curl)');
let stack: TestStack;
const events: Envelope<GuestEvent>[] = [];

beforeAll(async () => {
  if (!haveClient) return;
  stack = await testStack({
    hooks: true, agents: ['sensing'], policies: { senseIntervalMs: 30_000 },
    options: { sensing: { alertmanagerPort: 0, hookToken: TOKEN } },
  });
  // the embedded twin reports with the stack's token; here sensing wants TOKEN
  stack.sim.state.hooks.env.HOMEOSTAT_HOOK_TOKEN = TOKEN;
  const sub = stack.bus.nc.subscribe('fleet.events.guest.>');
  void (async () => {
    for await (const m of sub) events.push(JSON.parse(m.string()) as Envelope<GuestEvent>);
  })();
  await stack.bus.nc.flush();
}, 60_000);
afterAll(() => stack?.stop());

const sensing = () => stack.agents.get('sensing') as SensingHandle & { alertmanagerPort: number };
const post = (body: unknown, auth = `Bearer ${TOKEN}`) => fetch(`http://127.0.0.1:${sensing().alertmanagerPort}/pve/hook`, {
  method: 'POST', headers: { 'content-type': 'application/json', authorization: auth }, body: typeof body === 'string' ? body : JSON.stringify(body),
});

describe.skipIf(!haveClient)('hookscript push', () => {
  it('a crash is seen at once through the post-stop hook, confirmed by the API', async () => {
    expect(stack.hookUrl).toBe(`http://127.0.0.1:${sensing().alertmanagerPort}/pve/hook`);
    const rounds = sensing().rounds();
    await stack.api.fault('crash', 159);
    const ev = await until(() => events.find((e) => e.type === 'GuestStateChanged' && e.data.vmid === 159 && e.data.state === 'stopped'), 10_000);
    expect(ev.data.reason).toBe('running → stopped (hookscript post-stop)');
    await until(() => sensing().rounds() > rounds, 5000);
  });

  it('a start: PVE says running while the guest still boots', async () => {
    stack.sim.state.model.guests.get(159)!.bootMs = 100_000; // × time scale 0.05: 5 s of booting
    await stack.pve!.waitForTask('node-b', await stack.pve!.start({ node: 'node-b', vmid: 159, type: 'lxc' }), { timeoutMs: 10_000 });
    const up = await until(() => events.find((e) => e.type === 'GuestStateChanged' && e.data.vmid === 159 && e.data.state === 'running'), 10_000);
    expect(up.data).toMatchObject({ health: 'unknown', booting: true });
    expect(up.data.reason).toMatch(/hookscript (pre|post)-start/);
  });

  it('refuses bad reports (400), a missing token (401); ignores guests outside the fleet (202)', async () => {
    expect((await post('{not json')).status).toBe(400);
    expect((await post({ vmid: 159, phase: 'exploded' })).status).toBe(400);
    expect((await post({ vmid: 159, phase: 'post-stop' }, 'Bearer wrong-token-0000000000')).status).toBe(401);
    const outside = await post({ vmid: 999_999, phase: 'post-stop' });
    expect([outside.status, ((await outside.json()) as { status: string }).status]).toEqual([202, 'ignored']);
    expect((await post({ vmid: 159, phase: 'post-stop', node: 'node-b' })).status).toBe(202);
  });
});
