// Layered boot and graceful shutdown end to end: real nats-server, the simulator over HTTP, every
// agent running. Order is checked against the dependency graph from the action and workflow events.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../core/mod.ts';
import { Bus, DesiredState, kvList, replayStored, signApproval, type Action } from '../bus/mod.ts';
import { planShutdownWaves } from '../state-machines/mod.ts';
import { followWorkflow, runWorkflow, startWorkflow, type FollowedEvent } from '../workflows/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';

let stack: TestStack;
let bus: Bus;
const ALL = [100, 101, 102, 104, 120, 122, 124, 155, 159, 200, 243, 289];

beforeAll(async () => {
  // a short boot budget so a broken guest fails (after one retry) in seconds
  stack = await testStack({ policies: { guestBootTimeoutMs: 1500, guestRetries: 1 }, source: 'test-workflows' });
  bus = stack.bus;
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

const at = (events: FollowedEvent[], event: string) => {
  const m = new Map<number, number>();
  for (const e of events) if (e.env.data.event === event && e.env.data.vmid !== undefined && !m.has(e.env.data.vmid)) m.set(e.env.data.vmid, Date.parse(e.env.ts));
  return m;
};

async function actionsOf(workflowId: string, since: Date) {
  return (await replayStored(bus, 'fleet.actions.>', since)).filter((e) => (e.env.data as Action).workflowId === workflowId).map((e) => ({ type: e.env.type, ts: Date.parse(e.env.ts), a: e.env.data as Action }));
}

/** UPIDs of start tasks PVE (the simulator) ran per guest, from each node's task list. */
async function startTasks(): Promise<Map<number, Set<string>>> {
  const out = new Map<number, Set<string>>();
  for (const n of stack.fleet.nodes) {
    const r = await fetch(`${stack.pveUrl}/api2/json/nodes/${n.name}/tasks?typefilter=vzstart&limit=1000&source=all`, { headers: { Authorization: `PVEAPIToken=${stack.pveTokenId}=${stack.pveTokenSecret}` } });
    const body = (await r.json()) as { data: { upid: string; id: string }[] };
    for (const t of body.data) {
      const set = out.get(Number(t.id)) ?? new Set<string>();
      set.add(t.upid);
      out.set(Number(t.id), set);
    }
  }
  return out;
}

const fleetState = async () => new Map((await stack.api.fleet()).guests.map((g) => [g.vmid, g]));

/** Approve every pending approval while `p` runs (a protected guest's shutdown asks for one). */
async function approving<T>(p: Promise<T>, approved: string[] = []): Promise<T> {
  let done = false;
  const loop = (async () => {
    while (!done) {
      const list = await bus.request<{ actionId: string }[]>('fleet.cmd.approvals', 'Command', { args: {} }).catch(() => []);
      for (const a of list) {
        await bus.request('fleet.cmd.approve', 'Command', { args: { actionId: a.actionId, signed: signApproval(stack.keyring.get('operator').signer, 'approve', a.actionId) } }).catch(() => undefined);
        approved.push(a.actionId);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  try {
    return await p;
  } finally {
    done = true;
    await loop;
  }
}

async function shutdownAll(): Promise<void> {
  const r = await approving(runWorkflow(bus, 'shutdown', { includeProtected: true }));
  expect(r.status).toBe('done');
}

describe('graceful shutdown', () => {
  it('stops dependents before their dependencies and sets desired state stopped; protected guests only with includeProtected and an approval', async () => {
    const events: FollowedEvent[] = [];
    // fleet-wide by default: the protected homeassistant (200) and what it depends on keep running
    const kept = [101, 120, 200];
    const { reply: plan } = await startWorkflow(bus, 'shutdown', { dryRun: true });
    expect(plan.protectedKept?.slice().sort((a, b) => a - b)).toEqual(kept);
    const first = await runWorkflow(bus, 'shutdown', {}, (e) => events.push(e));
    expect(first.status).toBe('done');
    expect((first.output as { stopped: number[] }).stopped).toEqual(ALL.filter((v) => !kept.includes(v)));
    const mid = await fleetState();
    for (const v of kept) expect(mid.get(v)!.status, String(v)).toBe('running');
    // --include-protected: 200's shutdown goes through the gate and waits for an operator
    const approved: string[] = [];
    const r = await approving(runWorkflow(bus, 'shutdown', { includeProtected: true }, (e) => events.push(e)), approved);
    expect(r.status).toBe('done');
    expect(approved).toHaveLength(1);
    expect((r.output as { stopped: number[] }).stopped).toEqual(expect.arrayContaining(kept));
    const stopping = at(events, 'GUEST.STOPPING');
    const stopped = at(events, 'GUEST.STOPPED');
    for (const g of stack.fleet.guests) {
      for (const dep of stack.fleet.deps.get(g.vmid) ?? []) {
        // g depends on dep: dep is asked to stop only after g is down
        expect(stopping.get(dep)!, `${dep} stopping before its dependent ${g.vmid} stopped`).toBeGreaterThanOrEqual(stopped.get(g.vmid)!);
      }
    }
    const s = await fleetState();
    for (const v of ALL) expect(s.get(v)!.status, String(v)).toBe('stopped');
    const desired = await kvList(bus.kv.fleetState, 'desired.', DesiredState);
    for (const v of ALL) expect(desired.get(`desired.${v}`)?.state, String(v)).toBe('stopped');
    // nobody "heals" a deliberate shutdown
    await sleep(1500);
    expect([...(await fleetState()).values()].filter((g) => g.status !== 'stopped').map((g) => g.vmid)).toEqual([]);
  }, 90_000);

  it('--dry-run plans the reverse waves and touches nothing', async () => {
    const { reply } = await startWorkflow(bus, 'shutdown', { dryRun: true });
    expect(reply.dryRun).toBe(true);
    // everything is already stopped: nothing left to plan
    expect((reply.output as { plan: { waves: number[][] } }).plan.waves).toEqual([]);
    const graph = stack.fleet.guests.map((g) => ({ vmid: g.vmid, dependsOn: stack.fleet.deps.get(g.vmid) ?? [] }));
    expect(planShutdownWaves(graph).waves[0]).toEqual([100, 104, 124, 200, 243, 289]);
  });
});

describe('layered boot', () => {
  it('from all-stopped reaches all-healthy, each guest started only after its dependencies were healthy', async () => {
    const t0 = new Date();
    const events: FollowedEvent[] = [];
    const r = await runWorkflow(bus, 'boot', {}, (e) => events.push(e));
    expect(r.status, JSON.stringify(r.output)).toBe('done');
    expect((r.output as { healthy: number[] }).healthy).toEqual(ALL);
    const healthy = at(events, 'GUEST.HEALTHY');
    const starts = (await actionsOf(r.workflowId, t0)).filter((x) => x.type === 'ActionStarted' && x.a.verb === 'start');
    expect(starts.map((x) => x.a.target.vmid).sort((a, b) => a - b)).toEqual(ALL);
    for (const s of starts) {
      for (const dep of stack.fleet.deps.get(s.a.target.vmid) ?? []) {
        expect(s.ts, `${s.a.target.vmid} started before its dependency ${dep} was healthy`).toBeGreaterThanOrEqual(healthy.get(dep)!);
      }
    }
    const s = await fleetState();
    for (const v of ALL) expect(s.get(v)!.healthy, String(v)).toBe(true);
    const desired = await kvList(bus.kv.fleetState, 'desired.', DesiredState);
    for (const v of ALL) expect(desired.get(`desired.${v}`), String(v)).toMatchObject({ state: 'running', maintenance: false });
  }, 60_000);

  it('a broken layer-2 guest holds only what depends on it', async () => {
    await shutdownAll();
    const fault = await stack.api.fault('unhealthy', 159);
    try {
      const r = await runWorkflow(bus, 'boot', {});
      expect(r.status).toBe('failed');
      const o = r.output as { healthy: number[]; failed: number[]; held: number[]; reasons: Record<string, string> };
      expect(o.failed).toEqual([159]);
      expect(o.held).toEqual([100, 122, 289]);
      expect(o.healthy).toEqual([101, 102, 104, 120, 124, 155, 200, 243]);
      expect(o.reasons['122']).toMatch(/159/);
      const s = await fleetState();
      for (const v of [100, 122, 289]) expect(s.get(v)!.status, `${v} must never start over a broken dependency`).toBe('stopped');
    } finally {
      await stack.api.heal(fault.id);
    }
    // with 159 fixed, a second boot starts only what is missing
    await until(async () => (await fleetState()).get(159)?.healthy === true, 20_000);
    const again = await runWorkflow(bus, 'boot', {});
    expect(again.status).toBe('done');
    expect((again.output as { started: number[] }).started.sort((a, b) => a - b)).toEqual([100, 122, 289]);
  }, 90_000);

  it('resumes from KV after the workflows agent is killed mid-boot, starting no guest twice', async () => {
    await shutdownAll();
    const before = await startTasks();
    const t0 = new Date();
    const { reply, requestedAt } = await startWorkflow(bus, 'boot', {});
    const events: FollowedEvent[] = [];
    let killed = false;
    const followed = followWorkflow(bus, { kind: 'boot', workflowId: reply.workflowId, since: requestedAt, onEvent: (e) => events.push(e) });
    await until(() => events.some((e) => e.env.data.event === 'LAYER.DONE'), 20_000, 5);
    expect(events.some((e) => e.env.data.event === 'BOOT.DONE')).toBe(false);
    await stack.stopAgent('workflows');
    killed = true;
    await sleep(300);
    await stack.startAgent('workflows');
    const r = await followed;
    expect(killed).toBe(true);
    expect(r.status).toBe('done');
    expect((r.output as { healthy: number[] }).healthy).toEqual(ALL);
    // exactly one PVE start task per guest, one ActionStarted per action id
    const after = await startTasks();
    for (const v of ALL) expect((after.get(v)?.size ?? 0) - (before.get(v)?.size ?? 0), `start tasks for ${v}`).toBe(1);
    const started = (await actionsOf(reply.workflowId, t0)).filter((x) => x.type === 'ActionStarted');
    const ids = started.map((x) => x.a.actionId);
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(started.map((x) => x.a.target.vmid)).size).toBe(12);
  }, 90_000);
});

describe('CLI', () => {
  const cli = (args: string[]) => new Promise<{ code: number; out: string; err: string }>((resolve) => {
    const p = spawn(process.execPath, ['bin/homeostat.js', ...args, '--nats', stack.natsUrl], { env: { ...process.env, NO_COLOR: '1' } });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => resolve({ code: code ?? -1, out, err }));
  });

  it('boot --json prints one line per event and a final result; exit 0', async () => {
    // not a terminal and no --yes: refused before anything starts
    const refused = await cli(['boot']);
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/HOMEOSTAT_ERR_NOT_CONFIRMED: boot of the whole fleet needs a confirmation .*--yes/);
    const r = await cli(['boot', '--json', '--yes']);
    expect(r.code, r.err).toBe(0);
    const lines = r.out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const last = lines.at(-1)!;
    expect(last).toMatchObject({ kind: 'boot', status: 'done', exitCode: 0 });
    expect(lines.some((l) => (l.data as { event?: string })?.event === 'BOOT.PLANNED')).toBe(true);
  }, 60_000);

  it('shutdown --layer 4 --dry-run prints the plan; bad flags exit 2', async () => {
    const dry = await cli(['shutdown', '--layer', '4', '--dry-run']);
    expect(dry.code, dry.err).toBe(0);
    expect(dry.out).toContain('wave 1: 100 casaos-media, 104 nvr69\n');
    expect(dry.out).toMatch(/left running: 200 homeassistant \(protected/);
    const bad = await cli(['boot', '--layer', '9', '--yes']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--layer: no layer 9/);
    const worse = await cli(['failover']);
    expect(worse.code).toBe(2);
  }, 60_000);
});
