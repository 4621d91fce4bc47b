// A full homeostat stack for end-to-end tests: the run's nats-server, the simulator over HTTP,
// short intervals and a time scale so the reference fleet heals in well under a second per step.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNatsServer, type NatsServerHandle } from '../../cli/nats-server.ts';
import { createLogger, sleep } from '../../core/mod.ts';
import { loadConfig, type AgentName, type AgentOptions } from '../../agents/mod.ts';
import { startStack, type Stack } from '../../cli/stack.ts';
import { buildFleet, type Fleet } from '../../fleet/manifest.ts';
import { REFERENCE_MANIFEST } from '../../fleet/reference-fleet.ts';
import { simApi } from '../../testkit/mod.ts';
import { Bus } from '../../bus/mod.ts';
import { until } from './bus.ts';

export interface TestStack extends Stack {
  fleet: Fleet;
  /** A client connection of the test's own (stopped with the stack). */
  bus: Bus;
  sim: NonNullable<Stack['sim']>;
  api: ReturnType<typeof simApi>;
  /** The stack's own nats-server: tests stop it and start it again on the same port and store. */
  nats: NatsServerHandle;
  natsDir: string;
}

/** The stack, a client bus, and (unless `ready: false`) a fleet that is healthy and seen so by sensing. */
export async function testStack(opts: { policies?: Record<string, unknown>; timeScale?: number; agents?: AgentName[]; options?: AgentOptions; source?: string; ready?: boolean; env?: Record<string, string>; hooks?: boolean } = {}): Promise<TestStack> {
  const manifest = structuredClone(REFERENCE_MANIFEST) as typeof REFERENCE_MANIFEST & { policies: Record<string, unknown> };
  manifest.policies = { senseIntervalMs: 200, probeTimeoutMs: 500, cooldownMs: 0, fenceDelayMs: 1000, guestBootTimeoutMs: 10_000, approvalTimeoutMs: 3000, ...(opts.policies ?? {}) };
  const fleet = buildFleet(manifest);
  // Each end-to-end stack gets its own nats-server: agents use fixed durable names and KV keys,
  // so two stacks on one server (parallel test files) would share work.
  const dir = mkdtempSync(join(tmpdir(), 'homeostat-e2e-'));
  const nats = await startNatsServer({ dataDir: dir, port: 0 });
  const stack = await startStack({
    config: loadConfig({ LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent', ...(opts.env ?? {}) }),
    fleet,
    log: createLogger(process.env.TEST_LOG_LEVEL ?? 'silent'),
    natsUrl: nats.url,
    sim: { port: 0, http: true, timeScale: opts.timeScale ?? 0.05, hooks: opts.hooks },
    agents: opts.agents,
    options: opts.options,
  });
  const api = simApi({ url: stack.pveUrl!, tokenId: stack.pveTokenId!, tokenSecret: stack.pveTokenSecret! });
  const bus = await Bus.connect({ servers: nats.url, source: opts.source ?? 'test' });
  const stopStack = stack.stop;
  const ts = Object.assign(stack, {
    fleet, sim: stack.sim!, api, bus, nats, natsDir: dir,
    stop: async () => {
      await bus.stop();
      await api.close();
      await stopStack();
      await ts.nats.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  });
  if (opts.ready !== false) {
    await until(async () => (await api.fleet()).guests.every((g) => g.healthy), 20_000);
    await sleep(800); // sensing has seen the healthy fleet
  }
  return ts;
}
