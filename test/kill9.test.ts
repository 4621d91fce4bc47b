// kill -9 mid-work, the short variant of the torture scenario (bench/torture.ts kill9): `up
// --replicas 1` runs every agent as its own process; a guest crashes, and the agent that holds the
// remediation right then is SIGKILLed — the decision agent once the incident is open, the action
// agent once the action is approved. up starts the killed one again; each crash is healed by
// exactly one PVE start task (lost 0, doubled 0).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Bus, decode, readIdentity, subjects, type Action, type Incident } from '../bus/mod.ts';
import { buildFleet } from '../fleet/manifest.ts';
import { REFERENCE_MANIFEST } from '../fleet/reference-fleet.ts';
import { agentProcessPid, simApi } from '../testkit/mod.ts';
import { until } from './helpers/bus.ts';

const BIN = new URL('../bin/homeostat.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'homeostat-kill9-'));
const manifest = structuredClone(REFERENCE_MANIFEST) as typeof REFERENCE_MANIFEST & { policies: Record<string, unknown> };
manifest.policies = { senseIntervalMs: 250, probeTimeoutMs: 500, cooldownMs: 0, guestBootTimeoutMs: 15_000, approvalTimeoutMs: 600_000 };
const fleet = buildFleet(manifest);

let up: ReturnType<typeof spawn>;
let bus: Bus;
let sim: ReturnType<typeof simApi>;
let ready: { natsUrl: string; natsCreds: string; pveUrl: string; pveTokenId: string; pveTokenSecret: string };
let stderr = '';
/** Per victim, the steps of its remediation seen on the bus. */
const reached = new Map<number, Set<string>>();

beforeAll(async () => {
  const fleetFile = join(dir, 'fleet.json');
  writeFileSync(fleetFile, JSON.stringify(manifest));
  up = spawn(process.execPath, [BIN, 'up', '--sim', '--http', '--replicas', '1', '--fleet', fleetFile, '--time-scale', '0.05', '--data-dir', join(dir, 'data'),
    '--nats-port', '0', '--sim-port', '0', '--alertmanager-port', 'off', '--metrics-port', 'off', '--console-port', 'off'], {
    env: { ...process.env, LOG_LEVEL: 'warn', NATS_URL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  up.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  ready = JSON.parse(await new Promise<string>((resolve, reject) => {
    createInterface({ input: up.stdout! }).once('line', resolve);
    up.once('exit', (code) => reject(new Error(`up exited (${code}) before its ready line: ${stderr.slice(-2000)}`)));
  })) as typeof ready;
  bus = await Bus.connect({ servers: ready.natsUrl, source: 'kill9-test', seed: readIdentity(ready.natsCreds).seed });
  sim = simApi({ url: ready.pveUrl, tokenId: ready.pveTokenId, tokenSecret: ready.pveTokenSecret });
  bus.nc.subscribe('fleet.>', {
    callback: (_e, m) => {
      const r = decode(m.subject, m.data);
      if (!r.ok) return;
      const d = r.env.data as Partial<Action & Incident>;
      if (m.subject.endsWith('.opened') && d.rootCause?.vmid !== undefined) reached.get(d.rootCause.vmid)?.add('incident');
      if (m.subject === subjects.action('approved') && d.target) reached.get(d.target.vmid)?.add('approved');
    },
  });
  await until(async () => (await sim.fleet()).guests.every((g) => g.healthy), 60_000, 250);
  await new Promise((r) => setTimeout(r, 1500)); // sensing has seen the healthy fleet
}, 120_000);

afterAll(async () => {
  await sim?.close();
  await bus?.stop();
  if (up && up.exitCode === null) {
    up.kill('SIGTERM');
    await new Promise((r) => up.once('exit', r));
  }
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

async function startTasks(vmid: number): Promise<number> {
  const g = fleet.guests.find((x) => x.vmid === vmid)!;
  const res = await fetch(`${ready.pveUrl}/api2/json/nodes/${g.node}/tasks?source=all&vmid=${vmid}&typefilter=${g.type === 'qemu' ? 'qmstart' : 'vzstart'}&limit=500`, {
    headers: { Authorization: `PVEAPIToken=${ready.pveTokenId}=${ready.pveTokenSecret}` },
  });
  return ((await res.json()) as { data: unknown[] }).data.length;
}

const healthy = async (vmid: number) => (await sim.fleet()).guests.find((g) => g.vmid === vmid)?.healthy === true;

describe('kill -9 of an agent mid-remediation (up --replicas 1)', () => {
  for (const [agent, step, vmid] of [['decision', 'incident', 124], ['action', 'approved', 289]] as const) {
    it(`${agent} killed once the ${step === 'incident' ? 'incident is open' : 'action is approved'}: healed, by one start task`, async () => {
      const before = await startTasks(vmid);
      reached.set(vmid, new Set());
      await sim.fault('crash', vmid);
      await until(async () => reached.get(vmid)!.has(step), 20_000, 5);
      const pid = agentProcessPid(up.pid!, agent);
      expect(pid, `${agent}'s process`).toBeDefined();
      process.kill(pid!, 'SIGKILL');
      await until(() => healthy(vmid), 90_000, 200);
      // up started the killed agent again; what it would have doubled shows by the time it is up
      await until(async () => { const now = agentProcessPid(up.pid!, agent); return now !== undefined && now !== pid; }, 30_000, 200);
      await new Promise((r) => setTimeout(r, 3000));
      expect(await startTasks(vmid)).toBe(before + 1);
      expect(up.exitCode).toBeNull();
    }, 150_000);
  }
});
