// Crash safety of long-running processes. The periodic and background work of every agent (decision
// and analysis reconciling from KV listings, an approval expiring, the desired-state watch, the
// action tracker's re-check) hits a real NATS outage and nothing escapes as an unhandled rejection:
// each logs, retries on its next tick, and the loop heals after. And the last resort of `up` and
// `agent`: a rejection nobody handled is one log line with its code and the process carries on;
// an uncaught exception stops it cleanly (exit 1) for its supervisor to start again.
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IncidentRecord, kvList } from '../bus/mod.ts';
import { AGENT_NAMES } from '../agents/mod.ts';
import { startNatsServer } from '../cli/nats-server.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';

/** Longer than a JetStream request's timeout (5 s): KV listings in flight time out during it. */
const OUTAGE_MS = 12_000;

let stack: TestStack;
const rejections: unknown[] = [];
const onRejection = (e: unknown) => void rejections.push(e);
const ended = new Set<string>();
beforeAll(async () => {
  process.on('unhandledRejection', onRejection);
  // every periodic task runs several times during the outage; the approval expires during it
  stack = await testStack({ source: 'crash-safety', policies: { approvalTimeoutMs: 4000 }, options: { decision: { reconcileMs: 300 }, analysis: { reconcileMs: 300 } } });
  for (const [name, h] of stack.agents) void h.stopped.then(() => ended.add(name));
}, 60_000);
afterAll(async () => {
  process.off('unhandledRejection', onRejection);
  await stack?.stop();
});

const healthy = async (vmid: number) => (await stack.api.fleet()).guests.find((g) => g.vmid === vmid)?.healthy === true;

describe('periodic work during a NATS outage', () => {
  it('no unhandled rejection, every agent still running, and a crash after it is healed', async () => {
    // a protected guest: its incident waits for an approval that times out during the outage
    await stack.api.fault('crash', 200);
    await until(async () => [...(await kvList(stack.bus.kv.incidents, '', IncidentRecord)).values()].some((i) => i.status === 'open' && i.rootCause.vmid === 200), 15_000, 200);

    await stack.nats.stop();
    await new Promise((r) => setTimeout(r, OUTAGE_MS));
    stack.nats = await startNatsServer({ dataDir: stack.natsDir, port: stack.nats.port });

    await stack.api.fault('crash', 124);
    await until(async () => !(await healthy(124)), 10_000, 100);
    await until(() => healthy(124), 45_000, 250);
    expect(rejections.map((e) => String((e as Error)?.stack ?? e))).toEqual([]);
    expect([...ended]).toEqual([]);
    expect([...stack.agents.keys()].sort()).toEqual([...AGENT_NAMES].sort());
  }, 120_000);
});

const DIST = new URL('../dist/', import.meta.url).href;

describe('the last resort of a long-running process (dist/cli/crash-guard.js, as up and agent install it)', () => {
  it('a rejection nobody handled: one line with its code, still running; an uncaught exception: a clean stop', () => {
    const script = `
      import { guardProcess } from '${DIST}cli/crash-guard.js';
      import { createLogger } from '${DIST}core/mod.js';
      const guard = guardProcess(createLogger('info'));
      // what nats.js did during a 5-minute outage: a TimeoutError in a promise nobody awaited
      void Promise.reject(Object.assign(new Error('timeout'), { name: 'TimeoutError', code: 'TIMEOUT' }));
      setTimeout(() => {
        process.stdout.write('alive\\n');
        setTimeout(() => { throw new TypeError('a bug in a callback'); }, 10);
      }, 200);
      const e = await guard.fatal;
      process.stdout.write('stopping after: ' + e.message + '\\n');
      process.exitCode = 1;
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.stdout.trim().split('\n')).toEqual(['alive', 'stopping after: a bug in a callback']);
    expect(r.status).toBe(1);
    const lines = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; code: string; err: string; transient?: boolean });
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ code: 'TIMEOUT', err: 'timeout', transient: true, msg: expect.stringMatching(/unhandled rejection.*still running/) });
    expect(lines[1]).toMatchObject({ code: 'TypeError', err: 'a bug in a callback', msg: expect.stringMatching(/uncaught exception: stopping/) });
  });
});
