// `homeostat cancel` of a shutdown through the real binary on the twin: what is in flight finishes,
// nothing more is shut down, the workflow ends "aborted".
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kvGet, kvKeys, replayStored, WorkflowRecord } from '../bus/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';
import { runCli } from './helpers/cli.ts';

let stack: TestStack;
beforeAll(async () => {
  stack = await testStack({ source: 'cancel' });
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});
const cli = (args: string[]) => runCli(args, { NATS_URL: stack.natsUrl, HOMEOSTAT_DATA_DIR: '/nonexistent' });

describe('cancel', () => {
  it('a shutdown cancelled mid-way: the guests in flight stop, the layers below keep running, status aborted', async () => {
    const t0 = new Date();
    // a slow PVE API (every call 1.5 s): the shutdown takes long enough to cancel it mid-way
    const { id: slow } = await stack.api.fault('api-slow', '*', undefined, { delayMs: 1500 });
    const started = await cli(['shutdown', '--yes', '--no-wait']);
    expect(started.code, started.err).toBe(0);
    const id = /(shutdown-[\w-]+)/.exec(started.out)?.[1];
    expect(id, started.out).toBeDefined();
    await until(async () => (await replayStored(stack.bus, `fleet.workflows.shutdown.${id}.>`, t0)).some((e) => (e.env.data as { event?: string }).event === 'GUEST.STOPPING'), 15_000);

    const c = await cli(['cancel', id!.slice(0, 14)]);
    expect(c.code, c.err).toBe(0);
    expect(c.out).toMatch(new RegExp(`cancelling ${id}: nothing more is shut down; the guests in flight finish`));
    await stack.api.heal(slow);
    const rec = await until(async () => {
      const r = (await kvGet(stack.bus.kv.workflows, kvKeys.workflow(id!), WorkflowRecord))?.value;
      return r && r.status !== 'running' ? r : undefined;
    }, 60_000);
    expect(rec.status).toBe('aborted');
    const out = rec.output as { cancelled?: string; stopped: number[]; held: number[]; order: number[]; reasons: Record<string, string> };
    expect(out.cancelled).toMatch(/^cancelled by cli:/);
    expect(out.held).toContain(159); // the last wave was never asked
    for (const v of out.held) expect(out.reasons[v]).toMatch(/^cancelled by cli:/);
    expect(new Set(out.stopped)).toEqual(new Set(out.order)); // everything asked finished
    const fleet = await stack.api.fleet();
    for (const v of out.held) expect(fleet.guests.find((g) => g.vmid === v)?.state, String(v)).toBe('running');
    for (const v of out.stopped) expect(fleet.guests.find((g) => g.vmid === v)?.state, String(v)).toBe('stopped');
    const list = await cli(['workflows', 'list']);
    expect(list.out).toMatch(new RegExp(`${id}.*aborted`));
    const again = await cli(['cancel', id!]);
    expect(again.code).not.toBe(0); // it is no longer running
  }, 120_000);
});
