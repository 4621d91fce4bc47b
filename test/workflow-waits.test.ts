// What a following operator reads in a workflow's quiet stretches: "waiting for 159 db-empleos to
// be healthy", "waiting for fence delay 10.0 s", "waiting for cooldown 15.0 s" — the last from a
// real GATE.HOLD that the workflows' action tracker publishes when the gate holds a proposal (its
// own nats-server; the decision agent's answer is the test's).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Bus, subjects, type WorkflowEvent } from '../bus/mod.ts';
import { createLogger } from '../core/mod.ts';
import { startNatsServer, type NatsServerHandle } from '../cli/nats-server.ts';
import { ActionTracker, waitingAfter, WorkflowBoard } from '../workflows/mod.ts';
import { until } from './helpers/bus.ts';

const ev = (event: string, over: Partial<WorkflowEvent> = {}): WorkflowEvent => ({ workflowId: 'boot-x', kind: 'boot', event, detail: {}, ...over });
const names = (v: number) => (v === 159 ? '159 db-empleos' : String(v));

describe('what a workflow waits for', () => {
  it('after each kind of event, in words', () => {
    expect(waitingAfter(ev('GUEST.STARTED', { vmid: 159 }), names)).toBe('waiting for 159 db-empleos to be healthy');
    expect(waitingAfter(ev('GUEST.STOPPING', { kind: 'shutdown', vmid: 159 }), names)).toBe('waiting for 159 db-empleos to stop');
    expect(waitingAfter(ev('FENCE.CONFIRMING', { kind: 'failover', detail: { fenceDelayMs: 10_000 } }))).toBe('waiting for fence delay 10.0 s (since FENCE.CONFIRMING)');
    expect(waitingAfter(ev('GATE.HOLD', { vmid: 159, detail: { waitMs: 15_000, waitingFor: 'cooldown' } }))).toBe('waiting for cooldown 15.0 s (since GATE.HOLD)');
    expect(waitingAfter(ev('FAULT.INJECTED', { kind: 'chaos', detail: { kind: 'crash', target: 159, sloMs: 30_000 } }))).toBe('waiting for homeostat to heal crash on 159 (SLO 30.0 s)');
  });

  it('the live board shows it above the layers', () => {
    const board = new WorkflowBoard({ kind: 'boot', workflowId: 'boot-x', guests: [{ vmid: 159, name: 'db-empleos', node: 'node-b', layer: 2, dependsOn: [] }] } as unknown as ConstructorParameters<typeof WorkflowBoard>[0]);
    board.apply(ev('GATE.HOLD', { vmid: 159, detail: { waitMs: 15_000, waitingFor: 'cooldown' } }));
    expect(board.board().join('\n')).toMatch(/waiting: cooldown 15\.0 s \(since GATE\.HOLD\)/);
    board.apply(ev('GUEST.STARTED', { vmid: 159 }));
    expect(board.board().join('\n')).toMatch(/159 db-empleos started, waiting for its health check/);
  });
});

describe('a proposal the gate holds', () => {
  let nats: NatsServerHandle | undefined;
  const dir = mkdtempSync(join(tmpdir(), 'homeostat-waits-'));
  afterAll(async () => {
    await nats?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('is announced on the workflow (GATE.HOLD: cooldown, how long), then asked again', async () => {
    nats = await startNatsServer({ dataDir: dir, port: 0 });
    const bus = await Bus.connect({ servers: nats.url, source: 'workflows' });
    let asked = 0;
    const gate = bus.serve(subjects.propose('action'), async () => (++asked === 1
      ? { verdict: 'hold', reasons: ['cooldown: last remediation 3 s ago (cooldown 15 s)'], retryAt: Date.now() + 400 }
      : { verdict: 'deny', reasons: ['test: enough'] }));
    const seen: WorkflowEvent[] = [];
    const sub = bus.subscribe<WorkflowEvent>('fleet.workflows.boot.>', (env) => void seen.push(env.data));
    const tracker = new ActionTracker(bus, createLogger('silent'));
    await tracker.start();
    try {
      const run = tracker.execute({ actionId: 'boot-w1:159:start:0', verb: 'start', target: { vmid: 159, node: 'node-b' }, workflowId: 'boot-w1' }, { until: 'started' });
      await expect(run).rejects.toThrow(/policy gate: deny: test: enough/);
      expect(asked).toBe(2); // asked again after the hold
      const hold = await until(() => seen.find((e) => e.event === 'GATE.HOLD'), 5000);
      expect(hold).toMatchObject({ workflowId: 'boot-w1', kind: 'boot', vmid: 159, detail: { waitingFor: 'cooldown', verb: 'start' } });
      expect(waitingAfter(hold)).toMatch(/^waiting for cooldown 0\.\d\d s \(since GATE\.HOLD\)$/);
    } finally {
      await tracker.stop();
      await sub.stop();
      await gate.stop();
      await bus.stop();
    }
  }, 30_000);
});
