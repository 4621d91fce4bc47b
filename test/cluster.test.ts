// `up --nats-cluster 3 --replicas 2` end to end, on a small fleet: every stream and bucket has 3
// replicas; the sensing replicas divide the nodes; with one nats-server, the sensing replica
// holding a node and one replica of every other agent SIGKILLed, the dead replica's nodes are
// taken over, and a guest crashed on each node meanwhile is healed, by exactly one action, from
// one incident (nothing lost, nothing doubled).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { AUDIT_STREAM, Bus, FLEET_STREAM, openLeaseStores, readIdentity, replayStored, type Action, type Incident } from '../bus/mod.ts';
import { readNodeLeases } from '../agents/sensing/partition.ts';

const BIN = new URL('../bin/homeostat.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'homeostat-cluster-'));
/** One guest on each node of the reference fleet (no one depends on another): every sensing share. */
const VICTIMS = [243, 159, 102];
const NODES = ['node-a', 'node-b', 'node-c'];
let upChild: ReturnType<typeof spawn> | undefined;
let bus: Bus | undefined;

let natsPids: number[] = [];
const within = (p: Promise<unknown>, ms: number) => Promise.race([p.catch(() => undefined), new Promise((r) => setTimeout(r, ms))]);

// bounded: a stop that hangs on a cluster missing a server must not fail the file after the test
afterAll(async () => {
  await within(bus?.stop() ?? Promise.resolve(), 10_000);
  if (upChild && upChild.exitCode === null) {
    const exited = new Promise((r) => upChild!.once('exit', r));
    upChild.kill('SIGTERM');
    await within(exited, 30_000);
    if (upChild.exitCode === null) upChild.kill('SIGKILL'); // its agent processes follow it (lifeline pipe)
  }
  for (const pid of natsPids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

interface Ready { metricsUrl: string; guests: number; natsUrl: string; natsCreds: string; pveUrl: string; pveTokenId: string; pveTokenSecret: string; natsServers: { url: string; pid: number }[]; processes: { agent: string; pid: number }[] }

async function until<T>(what: string, ms: number, fn: () => Promise<T | undefined>, stepMs = 500): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

describe('NATS cluster and agent replicas', () => {
  it('loses nothing and doubles nothing when a nats-server and a replica of every agent are SIGKILLed', async () => {
    upChild = spawn(process.execPath, [BIN, 'up', '--sim', '--http', '--nats-cluster', '3', '--replicas', '2', '--data-dir', dir, '--nats-port', '0', '--sim-port', '0', '--alertmanager-port', 'off', '--metrics-port', '0', '--console-port', 'off'], {
      env: { ...process.env, LOG_LEVEL: 'warn', NATS_URL: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    upChild.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const line = await new Promise<string>((resolve, reject) => {
      createInterface({ input: upChild!.stdout! }).once('line', resolve);
      upChild!.once('exit', () => reject(new Error(`up exited before its ready line: ${stderr.slice(-2000)}`)));
    });
    const ready = JSON.parse(line) as Ready;
    natsPids = ready.natsServers.map((x) => x.pid);
    expect(ready.natsServers).toHaveLength(3);
    expect(ready.natsUrl.split(',')).toEqual(ready.natsServers.map((s) => s.url));
    expect(ready.processes).toHaveLength(14);
    for (const agent of ['sensing', 'analysis', 'decision', 'action', 'operator', 'workflows', 'notify']) {
      expect(ready.processes.filter((p) => p.agent === agent)).toHaveLength(2);
    }

    // authentication is on: the operator's identity, as the CLI would use it
    bus = await Bus.connect({ servers: ready.natsUrl, source: 'test', seed: readIdentity(ready.natsCreds).seed });
    for (const stream of [FLEET_STREAM, AUDIT_STREAM, 'KV_fleet-state', 'KV_incidents', 'KV_locks', 'KV_workflows']) {
      expect((await bus.jsm.streams.info(stream)).config.num_replicas, stream).toBe(3);
    }
    const since = new Date();
    const auth = { authorization: `PVEAPIToken=${ready.pveTokenId}=${ready.pveTokenSecret}`, 'content-type': 'application/json' };
    const states = async () => {
      const r = await fetch(`${ready.pveUrl}/sim/fleet`, { headers: auth });
      const f = (await r.json()) as { guests: { vmid: number; state: string }[] };
      return new Map(f.guests.map((g) => [g.vmid, g.state]));
    };
    await until('the victims running and known to sensing', 60_000, async () => {
      const s = await states();
      for (const v of VICTIMS) if (s.get(v) !== 'running' || !(await bus!.kv.fleetState.get(`guest.${v}`))) return undefined;
      return true;
    });

    // up's /metrics merges every agent process's own: all of them answer, sensing's replicas
    // count the guests of their nodes (together: the fleet), PVE reachable is the max, not a sum
    const sample = (text: string, name: string, labels = '') => text.split('\n')
      .filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `))
      .filter((l) => l.includes(labels))
      .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    const merged = await until('the merged metrics counting every guest once', 60_000, async () => {
      const text = await (await fetch(ready.metricsUrl)).text();
      return sample(text, 'homeostat_guests') === ready.guests ? text : undefined;
    });
    expect(sample(merged, 'homeostat_metrics_sources', 'state="answered"')).toBe(ready.processes.length);
    expect(sample(merged, 'homeostat_pve_up')).toBe(1);
    expect(sample(merged, 'process_resident_memory_bytes')).toBeGreaterThan(ready.processes.length * 20e6);

    // the sensing replicas divide the nodes: who holds which node now
    const stores = await openLeaseStores(bus.nc, 1000);
    const leases = () => readNodeLeases(stores, NODES);
    const sensingPids = ready.processes.filter((p) => p.agent === 'sensing').map((p) => p.pid);
    const before = await until('every node held by a sensing replica', 30_000, async () => {
      const held = await leases();
      return held.size === NODES.length ? held : undefined;
    });
    const pidOf = (holder: string) => Number(holder.split(':').pop());
    for (const h of before.values()) expect(sensingPids).toContain(pidOf(h));

    // one server of three, the sensing replica holding node-b, and the first replica of every
    // other agent (the active one or the standby)
    const sensingVictim = pidOf(before.get('node-b')!);
    const hisNodes = NODES.filter((n) => pidOf(before.get(n)!) === sensingVictim);
    process.kill(ready.natsServers[0].pid, 'SIGKILL');
    process.kill(sensingVictim, 'SIGKILL');
    const seen = new Set<string>(['sensing']);
    for (const p of ready.processes) {
      if (seen.has(p.agent)) continue;
      seen.add(p.agent);
      process.kill(p.pid, 'SIGKILL');
    }
    // crashes on every node while its holder is dead and its leases have not run out yet
    for (const v of VICTIMS) {
      const res = await fetch(`${ready.pveUrl}/sim/faults`, { method: 'POST', headers: auth, body: JSON.stringify({ kind: 'crash', target: String(v) }) });
      expect(res.status).toBe(201);
    }
    const killedAt = Date.now();
    // takeover: each node the dead replica held is held by another (the survivor, or the restarted replica)
    const after = await until('the dead sensing replica\'s nodes taken over', 60_000, async () => {
      const held = await leases();
      return hisNodes.every((n) => held.has(n) && pidOf(held.get(n)!) !== sensingVictim) ? held : undefined;
    }, 250);
    console.log(`sensing takeover of ${hisNodes.join(', ')} observed ${Date.now() - killedAt} ms after the SIGKILL: ${JSON.stringify(Object.fromEntries(after))}`);

    const succeeded = (actions: { env: { type: string; data: unknown } }[], v: number) => actions.filter((a) => a.env.type === 'ActionSucceeded' && (a.env.data as Action).target.vmid === v);
    // correctness here (nothing lost, nothing doubled); how fast is bench/scale's: a taking-over
    // analysis has needed up to ~100 s after the kills there (README, scale row)
    await until('every victim healed by an action', 240_000, async () => {
      const actions = await replayStored(bus!, 'fleet.actions.>', since);
      const s = await states();
      return VICTIMS.every((v) => succeeded(actions, v).length && s.get(v) === 'running') ? true : undefined;
    }).catch(async (e: unknown) => {
      const chain = await replayStored(bus!, 'fleet.>', since).catch(() => []);
      const told = chain.filter((ev) => !ev.env.type.endsWith('Probe')).map((ev) => `${ev.env.ts} ${ev.env.type} ${ev.subject}`);
      throw new Error(`${(e as Error).message}\nevents since the kill:\n${told.slice(-40).join('\n')}\nup's stderr:\n${stderr.slice(-3000)}`);
    });
    // what replicas could double shows up within seconds; give it that long
    await new Promise((r) => setTimeout(r, 5000));
    // a JetStream API call may time out while the cluster moves a stream leader: ask again
    const replay = (subject: string) => until(`a replay of ${subject}`, 30_000, () => replayStored(bus!, subject, since));
    const actions = await replay('fleet.actions.>');
    const incidents = await replay('fleet.incidents.*.opened');
    for (const v of VICTIMS) {
      expect(succeeded(actions, v), `vmid ${v}`).toHaveLength(1);
      expect(actions.filter((a) => a.env.type === 'ActionStarted' && (a.env.data as Action).target.vmid === v), `vmid ${v}`).toHaveLength(1);
      expect(incidents.filter((e) => (e.env.data as Incident).rootCause.vmid === v), `vmid ${v}`).toHaveLength(1);
    }
  }, 600_000); // more than the bounded waits above add up to, so a slow step fails with its own message
});
