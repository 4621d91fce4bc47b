// `npm run torture`: an operator's worst day against the full stack on the twin and a real
// nats-server, one JSON line per scenario. TORTURE=short (default; what CI-sized machines run)
// or full (10k flood, outages of 5 s / 45 s / 5 min); TORTURE_ONLY=flood,outage,slow-pve,replicas
// and OUTAGES=45,300 pick.
//   flood      malformed messages over every consumed subject; then a crash must still heal
//   outage-N   nats-server stopped N s, a guest crashed during it: healed after, no stale incident
//   slow-pve   PVE answering slower than the client timeout: PVE tasks per decision
//   replicas   two action agents, every action delivered to both and replayed: doubled actions
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, sleep } from '../core/mod.ts';
import { AGENT_NAMES, loadAgent, loadConfig } from '../agents/mod.ts';
import { Bus, FLEET_STREAM, IncidentRecord, kvList, sealAction, subjects, type Action } from '../bus/mod.ts';
import { startNatsServer, type NatsServerHandle } from '../cli/nats-server.ts';
import { startStack, type Stack } from '../cli/stack.ts';
import { buildFleet, type Fleet } from '../fleet/manifest.ts';
import { REFERENCE_MANIFEST } from '../fleet/reference-fleet.ts';
import { simApi, until } from '../testkit/mod.ts';
import { emit, isMain, round } from './harness.ts';

const FULL = process.env.TORTURE === 'full';
/** A rejection nobody handled would end `homeostat up`; here it is counted and reported. */
const unhandled: string[] = [];
process.on('unhandledRejection', (e) => void unhandled.push(`${(e as { code?: string })?.code ?? ''} ${(e as Error)?.stack?.split('\n').slice(0, Number(process.env.TORTURE_STACK_LINES ?? 3)).join(' | ') ?? String(e)}`));
const log = createLogger(process.env.LOG_LEVEL ?? 'silent');

interface Rig {
  stack: Stack;
  fleet: Fleet;
  bus: Bus;
  sim: ReturnType<typeof simApi>;
  nats: NatsServerHandle;
  dir: string;
  close(): Promise<void>;
}

async function rig(env: Record<string, string> = {}): Promise<Rig> {
  const manifest = structuredClone(REFERENCE_MANIFEST) as typeof REFERENCE_MANIFEST & { policies: Record<string, unknown> };
  manifest.policies = { senseIntervalMs: 250, probeTimeoutMs: 500, cooldownMs: 0, guestBootTimeoutMs: 15_000, approvalTimeoutMs: 600_000 };
  const fleet = buildFleet(manifest);
  const dir = mkdtempSync(join(tmpdir(), 'homeostat-torture-'));
  const r: Partial<Rig> = { fleet, dir };
  r.nats = await startNatsServer({ dataDir: dir, port: 0 });
  const stack = await startStack({ config: loadConfig({ LOG_LEVEL: 'silent', ...env }), fleet, log, natsUrl: r.nats.url, sim: { port: 0, http: true, timeScale: 0.05 } });
  const bus = await Bus.connect({ servers: r.nats.url, source: 'torture' });
  const sim = simApi({ url: stack.pveUrl!, tokenId: stack.pveTokenId!, tokenSecret: stack.pveTokenSecret! });
  Object.assign(r, { stack, bus, sim });
  const full = r as Rig;
  full.close = async () => {
    await sim.close();
    await bus.stop();
    await stack.stop();
    await full.nats.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  await until(async () => (await sim.fleet()).guests.every((g) => g.healthy), 30_000, 200);
  await sleep(1000);
  return full;
}

const healthy = async (r: Rig, vmid: number) => (await r.sim.fleet()).guests.find((g) => g.vmid === vmid)?.healthy === true;

/** Crash `vmid`; ms until it is healthy again, or undefined when it is not within `timeoutMs`. */
async function crashAndHeal(r: Rig, vmid: number, timeoutMs = 60_000): Promise<number | undefined> {
  const t0 = performance.now();
  await r.sim.fault('crash', vmid);
  await until(async () => !(await healthy(r, vmid)), 10_000, 50);
  try {
    await until(() => healthy(r, vmid), timeoutMs, 100);
    return Math.round(performance.now() - t0);
  } catch {
    return undefined;
  }
}

async function staleIncidents(r: Rig): Promise<number> {
  const health = new Map((await r.sim.fleet()).guests.map((g) => [g.vmid, g.healthy]));
  return [...(await kvList(r.bus.kv.incidents, '', IncidentRecord)).values()].filter((i) => i.status === 'open' && i.rootCause.vmid !== undefined && health.get(i.rootCause.vmid) === true).length;
}

async function tasks(r: Rig, node: string, vmid: number, type: string): Promise<number> {
  const res = await fetch(`${r.stack.pveUrl}/api2/json/nodes/${node}/tasks?source=all&vmid=${vmid}&typefilter=${type}&limit=500`, {
    headers: { Authorization: `PVEAPIToken=${r.stack.pveTokenId}=${r.stack.pveTokenSecret}` },
  });
  return ((await res.json()) as { data: unknown[] }).data.length;
}

const rssMb = () => round(process.memoryUsage().rss / 2 ** 20, 1);

async function flood(): Promise<void> {
  const r = await rig();
  try {
    const n = FULL ? 10_000 : 1000;
    // each with the number of durable consumers that read it (core subscribers write no letter;
    // notify has no consumers without a notifier configured)
    const consumers: [string, number][] = [
      [subjects.action('approved'), 2], // action-approved, decision-actions
      [subjects.guestEvent('node-a', 124), 1], // analysis-…-events
      [subjects.nodeEvent('node-b'), 1], // analysis-…-events
      [subjects.incident('inc-x', 'opened'), 1], // decision-incidents
      [subjects.alert('GuestDown'), 1], // analysis-…-alerts
      [subjects.action('succeeded'), 1], // decision-actions
    ];
    const targets = consumers.map(([s]) => s);
    const expected = Array.from({ length: n }, (_, i) => consumers[i % consumers.length][1]).reduce((a, b) => a + b, 0);
    const rssBefore = rssMb();
    const enc = new TextEncoder();
    for (let i = 0; i < n; i++) await r.bus.js.publish(targets[i % targets.length], enc.encode(i % 2 ? `{"broken ${i}` : JSON.stringify({ id: `x${i}`, data: { junk: i } })));
    let letters = -1;
    await until(async () => {
      const info = await r.bus.jsm.streams.info(FLEET_STREAM, { subjects_filter: 'fleet.dlq.>' });
      const now = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
      const settled = now === letters && now > 0;
      letters = now;
      return settled;
    }, 120_000, 2000);
    const crashed = [...r.stack.agents.keys()].length;
    const healMs = await crashAndHeal(r, 159);
    const lettersAfter = Object.values((await r.bus.jsm.streams.info(FLEET_STREAM, { subjects_filter: 'fleet.dlq.>' })).state.subjects ?? {}).reduce((a, b) => a + b, 0);
    const pass = healMs !== undefined && letters === expected && lettersAfter === letters && crashed === AGENT_NAMES.length;
    emit({ bench: 'torture', scenario: 'flood', bad_messages: n, subjects: targets.length, dead_letters: letters, expected_dead_letters: expected, dead_letters_after_heal: lettersAfter, agents_running: crashed, heal_after_ms: healMs ?? null, rss_before_mb: rssBefore, rss_after_mb: rssMb(), goal: 'crashes 0, one dead letter per bad message per consumer (none repeated), heals after', pass });
  } finally {
    await r.close();
  }
}

async function outage(seconds: number): Promise<void> {
  const r = await rig();
  try {
    await r.sim.fault('crash', 200); // protected: its incident waits for an operator
    await until(async () => [...(await kvList(r.bus.kv.incidents, '', IncidentRecord)).values()].some((i) => i.status === 'open' && i.rootCause.vmid === 200), 20_000, 200);
    await r.nats.stop();
    await r.sim.fault('crash', 124);
    await r.stack.pve!.start({ node: 'node-c', vmid: 200, type: 'lxc' }); // fixed by hand during the outage
    await sleep(seconds * 1000);
    const t0 = performance.now();
    r.nats = await startNatsServer({ dataDir: r.dir, port: r.nats.port });
    let healMs: number | undefined;
    try {
      await until(() => healthy(r, 124), 90_000, 200);
      healMs = Math.round(performance.now() - t0);
    } catch {
      healMs = undefined;
    }
    let stale = await staleIncidents(r);
    await until(async () => (stale = await staleIncidents(r)) === 0, 60_000, 500).catch(() => undefined);
    const rejections = unhandled.splice(0);
    emit({ bench: 'torture', scenario: `outage-${seconds}s`, outage_s: seconds, crashes_during: 1, lost: healMs === undefined ? 1 : 0, healed_after_reconnect_ms: healMs ?? null, stale_incidents: stale, unhandled_rejections: rejections.length, first_rejection: rejections[0], goal: 'lost 0, stale incidents 0, no unhandled rejection', pass: healMs !== undefined && stale === 0 && !rejections.length });
  } finally {
    await r.close();
  }
}

async function slowPve(): Promise<void> {
  const r = await rig({ PVE_TIMEOUT_MS: '400' });
  try {
    const slow = await r.sim.fault('api-slow', '*', undefined, { delayMs: 700 });
    const healMs = await crashAndHeal(r, 159, 120_000);
    await r.sim.heal(slow.id);
    const starts = await tasks(r, 'node-b', 159, 'vzstart');
    emit({ bench: 'torture', scenario: 'slow-pve', pve_delay_ms: 700, client_timeout_ms: 400, decisions: 1, pve_tasks: starts, healed_ms: healMs ?? null, goal: 'tasks per decision = 1', pass: starts === 1 && healMs !== undefined });
    const failing = await r.sim.fault('api-error', 'node-b', 3000);
    const healMs2 = await crashAndHeal(r, 155, 120_000);
    void failing;
    const starts2 = await tasks(r, 'node-b', 155, 'vzstart');
    emit({ bench: 'torture', scenario: 'failing-pve', api_error_ms: 3000, decisions: 1, pve_tasks: starts2, healed_ms: healMs2 ?? null, goal: 'tasks per decision = 1', pass: starts2 === 1 && healMs2 !== undefined });
  } finally {
    await r.close();
  }
}

async function replicas(): Promise<void> {
  const r = await rig();
  const mod = await loadAgent('action');
  const bus2 = await Bus.connect({ servers: r.nats.url, source: 'action' });
  const second = await mod.start({
    name: 'action', config: loadConfig({ LOG_LEVEL: 'silent' }), log, bus: bus2, fleet: r.fleet, pve: r.stack.pve, pveAccess: r.stack.pveAccess,
    options: { durableSuffix: '-second', decisionKeys: [r.stack.keyring.get('decision').publicKey] },
  });
  try {
    const guests = r.fleet.guests.filter((g) => !g.protected).slice(0, 4);
    const rounds = FULL ? 5 : 2;
    const done = new Set<string>();
    r.bus.nc.subscribe(subjects.action('succeeded'), { callback: (_e, m) => void done.add((JSON.parse(new TextDecoder().decode(m.data)) as { data: Action }).data.actionId) });
    for (let i = 0; i < rounds; i++) {
      const ids: string[] = [];
      for (const g of guests) {
        const a: Action = { actionId: `act-torture-${i}-${g.vmid}-${Date.now().toString(36)}`, verb: 'reboot', target: { vmid: g.vmid, node: g.node }, params: {}, proposer: 'workflow', requestedBy: 'torture', needsApproval: false };
        const sealed = sealAction(a, r.stack.keyring.get('decision').signer, 600_000); // as the decision agent does
        for (const suffix of ['', '-replay', '-replay2']) await r.bus.publish(subjects.action('approved'), 'ActionApproved', sealed, { msgId: `${a.actionId}${suffix}` });
        ids.push(a.actionId);
      }
      await until(() => ids.every((id) => done.has(id)), 60_000, 100);
    }
    await sleep(1500);
    let total = 0;
    for (const g of guests) total += await tasks(r, g.node, g.vmid, g.type === 'qemu' ? 'qmreboot' : 'vzreboot');
    const actions = guests.length * rounds;
    emit({ bench: 'torture', scenario: 'replicas', action_agents: 2, actions, deliveries_per_action: 6, pve_tasks: total, doubled: total - actions, goal: 'doubled 0', pass: total === actions });
  } finally {
    await second.stop();
    await bus2.stop();
    await r.close();
  }
}

export async function run(): Promise<void> {
  const only = process.env.TORTURE_ONLY?.split(',');
  const want = (s: string) => !only || only.includes(s);
  if (want('flood')) await flood();
  const outages = process.env.OUTAGES ? process.env.OUTAGES.split(',').map(Number) : FULL ? [5, 45, 300] : [5];
  for (const s of outages) if (want('outage')) await outage(s);
  if (want('slow-pve')) await slowPve();
  if (want('replicas')) await replicas();
}

if (isMain(import.meta.url)) await run();
