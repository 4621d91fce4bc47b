// `up --nats-cluster 3 --replicas 2` end to end, on a small fleet: every stream and bucket has 3
// replicas; with one nats-server and one replica of every agent SIGKILLed, a crashed guest is
// still healed, by exactly one action, from one incident.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { AUDIT_STREAM, Bus, FLEET_STREAM, readIdentity, replayStored, type Action, type Incident } from '../bus/mod.ts';

const BIN = new URL('../bin/homeostat.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'homeostat-cluster-'));
const VICTIM = 159;
let upChild: ReturnType<typeof spawn> | undefined;
let bus: Bus | undefined;

afterAll(async () => {
  await bus?.stop();
  if (upChild && upChild.exitCode === null) {
    upChild.kill('SIGTERM');
    await new Promise((r) => upChild!.once('exit', r));
  }
  rmSync(dir, { recursive: true, force: true });
}, 60_000);

interface Ready { natsUrl: string; natsCreds: string; pveUrl: string; pveTokenId: string; pveTokenSecret: string; natsServers: { url: string; pid: number }[]; processes: { agent: string; pid: number }[] }

async function until<T>(what: string, ms: number, fn: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

describe('NATS cluster and agent replicas', () => {
  it('loses nothing and doubles nothing when a nats-server and a replica of every agent are SIGKILLed', async () => {
    upChild = spawn(process.execPath, [BIN, 'up', '--sim', '--http', '--nats-cluster', '3', '--replicas', '2', '--data-dir', dir, '--nats-port', '0', '--sim-port', '0', '--alertmanager-port', 'off', '--metrics-port', 'off', '--console-port', 'off'], {
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
    const guestState = async () => {
      const r = await fetch(`${ready.pveUrl}/sim/fleet`, { headers: auth });
      const f = (await r.json()) as { guests: { vmid: number; state: string }[] };
      return f.guests.find((g) => g.vmid === VICTIM)?.state;
    };
    await until('the victim running and known to sensing', 60_000, async () => ((await guestState()) === 'running' && (await bus!.kv.fleetState.get(`guest.${VICTIM}`)) ? true : undefined));

    // one server of three, and the first replica of every agent (the active one or the standby)
    process.kill(ready.natsServers[0].pid, 'SIGKILL');
    const seen = new Set<string>();
    for (const p of ready.processes) {
      if (seen.has(p.agent)) continue;
      seen.add(p.agent);
      process.kill(p.pid, 'SIGKILL');
    }
    const res = await fetch(`${ready.pveUrl}/sim/faults`, { method: 'POST', headers: auth, body: JSON.stringify({ kind: 'crash', target: String(VICTIM) }) });
    expect(res.status).toBe(201);
    await until('the victim stopped', 10_000, async () => ((await guestState()) === 'stopped' ? true : undefined));

    const succeeded = (actions: { env: { type: string; data: unknown } }[]) => actions.filter((a) => a.env.type === 'ActionSucceeded' && (a.env.data as Action).target.vmid === VICTIM);
    await until('the victim healed by an action', 150_000, async () => {
      const actions = await replayStored(bus!, 'fleet.actions.>', since);
      return succeeded(actions).length && (await guestState()) === 'running' ? true : undefined;
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
    const started = actions.filter((a) => a.env.type === 'ActionStarted' && (a.env.data as Action).target.vmid === VICTIM);
    expect(succeeded(actions)).toHaveLength(1);
    expect(started).toHaveLength(1);
    const incidents = (await replay('fleet.incidents.*.opened')).filter((e) => (e.env.data as Incident).rootCause.vmid === VICTIM);
    expect(incidents).toHaveLength(1);
  }, 300_000);
});
