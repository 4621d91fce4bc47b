// Level-triggered through a NATS outage longer than anything used to wait (publishes gave up after
// 30 s): a crash during the outage is still healed, and an incident whose guest was fixed during
// the outage does not stay open. The real nats-server is stopped and started again on its store.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IncidentRecord, kvList } from '../bus/mod.ts';
import { startNatsServer } from '../cli/nats-server.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';

/** Longer than the old 30 s give-up of a persisted publish. */
const OUTAGE_MS = 35_000;

let stack: TestStack;
beforeAll(async () => {
  stack = await testStack({ source: 'outage', policies: { approvalTimeoutMs: 600_000 } });
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

const guest = async (vmid: number) => (await stack.api.fleet()).guests.find((g) => g.vmid === vmid);
const openIncidentsOf = async (vmid: number) =>
  [...(await kvList(stack.bus.kv.incidents, '', IncidentRecord)).values()].filter((i) => i.status === 'open' && i.rootCause.vmid === vmid);

describe(`NATS down for ${OUTAGE_MS / 1000} s`, () => {
  it('a crash during the outage is healed after it; an incident fixed by hand during it is resolved', async () => {
    // before: a protected guest crashes; its incident opens and waits for an operator
    await stack.api.fault('crash', 200);
    await until(async () => (await openIncidentsOf(200)).length > 0, 15_000, 200);

    await stack.nats.stop();
    // during: 124 crashes; the operator starts 200 by hand
    await stack.api.fault('crash', 124);
    await stack.pve!.start({ node: 'node-c', vmid: 200, type: 'lxc' });
    await new Promise((r) => setTimeout(r, OUTAGE_MS));
    stack.nats = await startNatsServer({ dataDir: stack.natsDir, port: stack.nats.port });

    await until(async () => (await guest(124))?.healthy === true, 45_000, 250);
    await until(async () => (await openIncidentsOf(200)).length === 0, 30_000, 250);
    expect((await guest(200))?.healthy).toBe(true);
    expect(await openIncidentsOf(124).then((l) => l.length)).toBeLessThanOrEqual(1); // resolves once verified
    await until(async () => (await openIncidentsOf(124)).length === 0, 30_000, 250);
  }, 180_000);
});
