// `npm run torture`: an operator's worst day against the full stack on the twin and a real
// nats-server, one JSON line per scenario. TORTURE=short (default; what CI-sized machines run)
// or full (10k flood, outages of 5 s / 45 s / 5 min, kill9 ×5); TORTURE_ONLY=flood,outage,slow-pve,replicas,kill9
// and OUTAGES=45,300 pick.
//   flood      malformed messages over every consumed subject; then a crash must still heal
//   outage-N   nats-server stopped N s, a guest crashed during it: healed after, no stale incident
//   slow-pve   PVE answering slower than the client timeout: PVE tasks per decision
//   replicas   two action agents, every action delivered to both and replayed: doubled actions
//   kill9      `up --replicas 1` (every agent its own process): a guest crashes and each agent in
//              turn is SIGKILLed at its step of the remediation (×1 short, ×5 full): lost, doubled
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, sleep } from '../core/mod.ts';
import { AGENT_NAMES, loadAgent, loadConfig } from '../agents/mod.ts';
import { Bus, decode, FLEET_STREAM, IncidentRecord, kvList, readIdentity, sealAction, subjects, type Action, type Incident } from '../bus/mod.ts';
import { startNatsServer, type NatsServerHandle } from '../cli/nats-server.ts';
import { startStack, type Stack } from '../cli/stack.ts';
import { buildFleet, type Fleet } from '../fleet/manifest.ts';
import { REFERENCE_MANIFEST } from '../fleet/reference-fleet.ts';
import { agentProcessPid, simApi, until } from '../testkit/mod.ts';
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

/** Where in a remediation each agent is killed: when its input for the victim has appeared. */
const KILL_AT: Record<string, 'fault' | 'event' | 'incident' | 'approved'> = {
  sensing: 'fault', analysis: 'event', decision: 'incident', action: 'approved', workflows: 'fault', operator: 'fault', notify: 'fault',
};

async function kill9(): Promise<void> {
  const rounds = FULL ? 5 : 1;
  const dir = mkdtempSync(join(tmpdir(), 'homeostat-torture-kill9-'));
  const manifest = structuredClone(REFERENCE_MANIFEST) as typeof REFERENCE_MANIFEST & { policies: Record<string, unknown> };
  // many remediations of few guests: no flap hold-down or budget in the way
  manifest.policies = { senseIntervalMs: 250, probeTimeoutMs: 500, cooldownMs: 0, guestBootTimeoutMs: 15_000, approvalTimeoutMs: 600_000, budgetPerMinute: 1000, flap: { maxRemediations: 1000, windowMs: 600_000 } };
  const fleetFile = join(dir, 'fleet.json');
  writeFileSync(fleetFile, JSON.stringify(manifest));
  const up = spawn(process.execPath, [new URL('../bin/homeostat.js', import.meta.url).pathname, 'up', '--sim', '--http', '--replicas', '1', '--fleet', fleetFile, '--time-scale', '0.05',
    '--data-dir', join(dir, 'data'), '--nats-port', '0', '--sim-port', '0', '--alertmanager-port', 'off', '--metrics-port', 'off', '--console-port', 'off'], {
    env: { ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent', NATS_URL: '' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let bus: Bus | undefined;
  try {
    const ready = JSON.parse(await new Promise<string>((resolve, reject) => {
      createInterface({ input: up.stdout! }).once('line', resolve);
      up.once('exit', (code) => reject(new Error(`up exited (${code}) before its ready line`)));
    })) as { natsUrl: string; natsCreds: string; pveUrl: string; pveTokenId: string; pveTokenSecret: string };
    bus = await Bus.connect({ servers: ready.natsUrl, source: 'torture', seed: readIdentity(ready.natsCreds).seed });
    const sim = simApi({ url: ready.pveUrl, tokenId: ready.pveTokenId, tokenSecret: ready.pveTokenSecret });
    const fleet = buildFleet(manifest);
    await until(async () => (await sim.fleet()).guests.every((g) => g.healthy), 60_000, 250);
    await sleep(1500);
    // leaves of the dependency graph: a crash of one stays one incident
    const victims = fleet.guests.filter((g) => !g.protected && !fleet.guests.some((o) => (o.dependsOn ?? []).includes(g.vmid)));
    const starts = async (vmid: number) => {
      const g = fleet.guests.find((x) => x.vmid === vmid)!;
      const res = await fetch(`${ready.pveUrl}/api2/json/nodes/${g.node}/tasks?source=all&vmid=${vmid}&typefilter=${g.type === 'qemu' ? 'qmstart' : 'vzstart'}&limit=500`, {
        headers: { Authorization: `PVEAPIToken=${ready.pveTokenId}=${ready.pveTokenSecret}` },
      });
      return ((await res.json()) as { data: unknown[] }).data.length;
    };
    // the step each kill waits for, per victim
    const reached = new Map<number, Set<string>>();
    const mark = (vmid: number | undefined, step: string) => vmid !== undefined && reached.get(vmid)?.add(step);
    const sub = bus.nc.subscribe('fleet.>', {
      callback: (_e, m) => {
        const r = decode(m.subject, m.data);
        if (!r.ok) return;
        const d = r.env.data as Partial<Action & Incident> & { vmid?: number; state?: string };
        if (m.subject.startsWith('fleet.events.guest.') && d.state !== undefined && d.state !== 'running') mark(d.vmid, 'event');
        else if (m.subject.endsWith('.opened')) mark(d.rootCause?.vmid, 'incident');
        else if (m.subject === subjects.action('approved')) mark(d.target?.vmid, 'approved');
      },
    });
    const agents = AGENT_NAMES.filter((a) => KILL_AT[a]);
    let kills = 0;
    let lost = 0;
    let doubled = 0;
    const missedStep: string[] = [];
    const healMs: number[] = [];
    for (let n = 0; n < rounds; n++) {
      for (const [i, agent] of agents.entries()) {
        const g = victims[(n * agents.length + i) % victims.length];
        const before = await starts(g.vmid);
        reached.set(g.vmid, new Set());
        const t0 = performance.now();
        await sim.fault('crash', g.vmid);
        const step = KILL_AT[agent];
        if (step !== 'fault') await until(async () => reached.get(g.vmid)!.has(step), 20_000, 5).catch(() => void missedStep.push(`${agent}@${step}`));
        const pid = agentProcessPid(up.pid!, agent);
        if (pid) {
          process.kill(pid, 'SIGKILL');
          kills++;
        }
        let healed = false;
        await until(async () => (healed = (await sim.fleet()).guests.find((x) => x.vmid === g.vmid)?.healthy === true), 90_000, 100).catch(() => undefined);
        if (healed) healMs.push(performance.now() - t0);
        else lost++;
        // the restarted agent is up again before the next round (what it would double shows by then)
        await until(async () => agentProcessPid(up.pid!, agent) !== undefined && agentProcessPid(up.pid!, agent) !== pid, 30_000, 200).catch(() => undefined);
        await sleep(3000);
        doubled += Math.max(0, (await starts(g.vmid)) - before - 1);
      }
    }
    sub.unsubscribe();
    await sim.close();
    const sorted = healMs.sort((a, b) => a - b);
    emit({ bench: 'torture', scenario: 'kill9', agents: agents.length, rounds, kills, crashes: rounds * agents.length, killed_without_seeing_its_step: missedStep, lost, doubled, heal_p50_ms: round(sorted[Math.floor(sorted.length / 2)] ?? NaN, 0), heal_max_ms: round(sorted[sorted.length - 1] ?? NaN, 0), goal: 'doubled 0, lost 0', pass: lost === 0 && doubled === 0 && kills === rounds * agents.length });
  } finally {
    await bus?.stop();
    if (up.exitCode === null) {
      up.kill('SIGTERM');
      await new Promise((r) => up.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
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
  if (want('kill9')) await kill9();
}

if (isMain(import.meta.url)) await run();
