// Chaos experiments end to end: the shipped files, the report on the bus, rollback after a crash of
// the runner, and invalid experiment files rejected by field.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sleep } from '../core/mod.ts';
import { Bus, replayStored, type WorkflowEvent } from '../bus/mod.ts';
import type { ChaosReport } from '../state-machines/mod.ts';
import { followWorkflow, runWorkflow, startWorkflow, type FollowedEvent } from '../workflows/mod.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';

let stack: TestStack;
let bus: Bus;
const dir = mkdtempSync(join(tmpdir(), 'homeostat-chaos-'));

beforeAll(async () => {
  stack = await testStack({ source: 'test-chaos' });
  bus = stack.bus;
}, 60_000);
afterAll(async () => {
  await stack?.stop();
});

const allHealthy = async () => (await stack.api.fleet()).guests.every((g) => g.healthy);
const simFaults = async () => (await stack.api.faults()) as { id: string; params?: Record<string, unknown> }[];

const cli = (args: string[], nats = true) => new Promise<{ code: number; out: string; err: string }>((resolve) => {
  const p = spawn(process.execPath, ['bin/homeostat.js', ...args, ...(nats ? ['--nats', stack.natsUrl] : [])], { env: { ...process.env, NO_COLOR: '1' } });
  let out = '';
  let err = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  p.on('close', (code) => resolve({ code: code ?? -1, out, err }));
});

describe('chaos experiments', () => {
  it('lists the shipped experiments', async () => {
    const list = await bus.request<{ name: string; error?: string }[]>('fleet.cmd.chaos.list', 'Command', { args: {} });
    expect(list.map((x) => x.name).sort()).toEqual(['api-brownout', 'flapping-guest', 'hang-database', 'kill-layer1', 'lose-node-b']);
    expect(list.filter((x) => x.error)).toEqual([]);
  });

  it('`chaos run <file>`: crash a layer-1 guest, homeostat heals it, PASS with MTTR within the SLO; the report is on the bus', async () => {
    const file = join(dir, 'kill-omada.yaml');
    writeFileSync(file, [
      'name: kill-omada-fast', 'steadyState:', '  - probe: all-guests-healthy', 'method:', '  - fault: crash', '    target: 101',
      'rollbacks:', '  - action: clear-faults', '  - action: start', '    vmid: 101', 'slo:', '  mttrMs: 20000', 'abort:', '  timeoutMs: 60000', '',
    ].join('\n'));
    const t0 = new Date();
    const refused = await cli(['chaos', 'run', file], false);
    expect(refused.code).toBe(2);
    expect(refused.err).toMatch(/HOMEOSTAT_ERR_NOT_CONFIRMED/);
    const r = await cli(['chaos', 'run', file, '--yes']);
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out).toMatch(/kill-omada-fast .*PASS/);
    expect(r.out).toMatch(/crash\s+101\s+healed/);
    expect(r.out).toContain('within SLO');
    expect(r.out).toContain('FAULT.HEALED');
    const reports = (await replayStored(bus, 'fleet.workflows.chaos.>', t0)).filter((e) => (e.env.data as WorkflowEvent).event === 'CHAOS.REPORT');
    expect(reports).toHaveLength(1);
    const report = (reports[0].env.data as WorkflowEvent).detail as unknown as ChaosReport;
    expect(report).toMatchObject({ experiment: 'kill-omada-fast', passed: true, rollback: { ran: true, ok: true } });
    expect(report.faults[0].mttrMs!).toBeGreaterThan(0);
    expect(report.faults[0].mttrMs!).toBeLessThanOrEqual(20_000);
  }, 60_000);

  it('lose-node-b (as shipped): failover heals it within the SLO, rollback brings node-b back', async () => {
    await until(allHealthy, 20_000);
    const r = await runWorkflow(bus, 'chaos.run', { name: 'lose-node-b' });
    const report = r.output as ChaosReport;
    expect(report.passed, JSON.stringify(report)).toBe(true);
    expect(r.status).toBe('done');
    expect(report.faults[0]).toMatchObject({ kind: 'node-down', target: 'node-b', withinSlo: true });
    expect(report.faults[0].mttrMs!).toBeLessThan(30_000);
    expect(report.steadyStateAfter).toBe(true);
    await until(async () => (await stack.api.fleet()).nodes.every((n) => n.online), 10_000);
    expect((await simFaults()).filter((f) => f.params?.homeostatWorkflow === r.workflowId)).toEqual([]);
  }, 120_000);

  it('--dry-run validates and plans, injects nothing', async () => {
    const r = await runWorkflow(bus, 'chaos.run', { name: 'hang-database', dryRun: true });
    expect(r.status).toBe('done');
    expect(r.output).toMatchObject({ dryRun: true, passed: false, experiment: 'hang-database' });
    expect((await simFaults()).filter((f) => f.params?.homeostatWorkflow === r.workflowId)).toEqual([]);
  });

  it('the workflows agent dies mid-experiment: the restored run goes straight to rollback', async () => {
    await until(allHealthy, 30_000);
    // a fault homeostat cannot heal (reboots do not clear it): the experiment would wait for a heal
    const experiment = {
      name: 'sick-db', steadyState: [{ probe: 'all-guests-healthy' }], method: [{ fault: 'unhealthy', target: 159 }],
      rollbacks: [{ action: 'clear-faults' }], slo: { mttrMs: 60_000 }, abort: { timeoutMs: 120_000 },
    };
    const { reply, requestedAt } = await startWorkflow(bus, 'chaos.run', { experiment });
    const events: FollowedEvent[] = [];
    const followed = followWorkflow(bus, { kind: 'chaos', workflowId: reply.workflowId, since: requestedAt, onEvent: (e) => events.push(e) });
    await until(() => events.some((e) => e.env.data.event === 'FAULT.INJECTED'), 20_000, 10);
    expect((await simFaults()).filter((f) => f.params?.homeostatWorkflow === reply.workflowId)).toHaveLength(1);
    await stack.stopAgent('workflows');
    await sleep(300);
    await stack.startAgent('workflows');
    const r = await followed;
    expect(r.status).toBe('aborted');
    const report = r.output as ChaosReport;
    expect(report).toMatchObject({ aborted: true, passed: false, rollback: { ran: true, ok: true } });
    expect(report.reason).toMatch(/restarted/);
    const names = events.map((e) => e.env.data.event);
    expect(names).toEqual(expect.arrayContaining(['CHAOS.ABORTED', 'ROLLBACK.STARTED', 'ROLLBACK.DONE', 'CHAOS.REPORT']));
    expect((await simFaults()).filter((f) => f.params?.homeostatWorkflow === reply.workflowId)).toEqual([]);
    await until(async () => (await stack.api.fleet()).guests.find((g) => g.vmid === 159)?.healthy === true, 30_000);
  }, 90_000);

  it('an invalid experiment file is refused with the field named (exit 2), before anything runs', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'name: bad-one\nsteadyState:\n  - probe: all-guests-healthy\nmethod:\n  - fault: explode\n    target: 101\n');
    const r = await cli(['chaos', 'run', bad], false);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/HOMEOSTAT_ERR_EXPERIMENT: bad\.yaml: method\[0\]\.fault:/);
    const protectedTarget = join(dir, 'protected.yaml');
    writeFileSync(protectedTarget, 'name: poke-ha\nsteadyState:\n  - probe: all-guests-healthy\nmethod:\n  - fault: crash\n    target: 200\n');
    const p = await cli(['chaos', 'run', protectedTarget], false);
    expect(p.code).toBe(2);
    expect(p.err).toMatch(/method\[0\]\.target: homeassistant \(200\) is protected/);
    // the agent validates what it is sent as well
    await expect(bus.request('fleet.cmd.chaos.run', 'Command', { args: { experiment: { name: 'x', steadyState: [], method: [] } } })).rejects.toMatchObject({ code: 'HOMEOSTAT_ERR_EXPERIMENT' });
  }, 30_000);
});
