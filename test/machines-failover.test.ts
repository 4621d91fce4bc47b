// NodeFailoverMachine alone: SimulatedClock and fake actors. The point of most of these: nothing
// is recovered unless the fence delay passed, the cluster confirmed the node offline, and the
// node was fenced.
import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, SimulatedClock, type AnyActorRef } from 'xstate';
import { NodeFailoverMachine, placeGuests, type ConfirmFenceOutput, type FailoverInput, type Progress } from '../state-machines/mod.ts';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { flush, runUntil } from './helpers/machines.ts';


const fleet = referenceFleet();
const onNodeB = fleet.guests.filter((g) => g.node === 'node-b').map((g) => ({ vmid: g.vmid, layer: g.layer, dependsOn: fleet.deps.get(g.vmid)! }));

function failoverInput(over: Partial<FailoverInput> = {}): FailoverInput {
  return {
    workflowId: 'fo',
    node: 'node-b',
    guests: onNodeB,
    survivors: [{ node: 'node-a', freeSlots: 5 }, { node: 'node-c', freeSlots: 5 }],
    fenceDelayMs: 10_000,
    healthTimeoutMs: 30_000,
    ...over,
  };
}

interface FakeOpts {
  offline?: boolean | 'throw';
  fence?: 'ok' | 'throw';
  recover?: (vmid: number) => 'ok' | 'throw';
  verify?: { ok: boolean; problems?: string[] };
}

function rig(opts: FakeOpts = {}, clock = new SimulatedClock()) {
  const sleep = (ms: number) => new Promise<void>((r) => clock.setTimeout(r, ms));
  const calls: { actor: string; at: number; vmid?: number; to?: string; actionId?: string; done?: number }[] = [];
  const progress: Progress[] = [];
  const machine = NodeFailoverMachine.provide({
    actors: {
      confirmFence: fromPromise(async (): Promise<ConfirmFenceOutput> => {
        calls.push({ actor: 'confirmFence', at: clock.now() });
        await sleep(100);
        if (opts.offline === 'throw') throw new Error('cluster status unavailable');
        return { offline: opts.offline ?? true, detail: 'node-b: online=0' };
      }),
      fenceNode: fromPromise(async ({ input }) => {
        const rec: (typeof calls)[number] = { actor: 'fenceNode', at: clock.now(), actionId: input.actionId };
        calls.push(rec);
        await sleep(100);
        if (opts.fence === 'throw') throw new Error('fence failed');
        rec.done = clock.now();
      }),
      recoverGuest: fromPromise(async ({ input }) => {
        const rec: (typeof calls)[number] = { actor: 'recoverGuest', at: clock.now(), vmid: input.vmid, to: input.to, actionId: input.actionId };
        calls.push(rec);
        await sleep(500);
        if (opts.recover?.(input.vmid) === 'throw') throw new Error('migrate failed');
        rec.done = clock.now();
      }),
      waitHealthy: fromPromise(async ({ input }) => {
        await sleep(fleet.byVmid.get(input.vmid)!.bootMs);
        return { at: clock.now() };
      }),
      verifyRecovery: fromPromise(async ({ input }) => {
        calls.push({ actor: 'verifyRecovery', at: clock.now() });
        return opts.verify ?? { ok: input.recovered.length > 0 };
      }),
    },
    actions: { emitProgress: (_, p) => void progress.push(p) },
  });
  return { clock, machine, calls, progress };
}

describe('placeGuests', () => {
  it('places lower layers first on the survivor with most free slots, ties by name', () => {
    const p = placeGuests(onNodeB, [{ node: 'node-c', freeSlots: 1 }, { node: 'node-a', freeSlots: 2 }]);
    expect(p).toEqual({ placed: [{ vmid: 120, to: 'node-a' }, { vmid: 155, to: 'node-a' }, { vmid: 159, to: 'node-c' }], unplaced: [100, 104], held: [] });
  });

  it('does not spend a slot on a guest whose dependency found none', () => {
    const p = placeGuests(onNodeB, [{ node: 'node-a', freeSlots: 0 }]);
    expect(p.unplaced).toEqual([100, 120, 155, 159]);
    expect(p.held).toEqual([104]);
  });
});

describe('NodeFailoverMachine', () => {
  it('waits the fence delay, confirms, fences, then recovers in dependency order', async () => {
    const r = rig();
    const actor = createActor(r.machine, { clock: r.clock, input: failoverInput() }).start();
    await runUntil(actor, r.clock, () => r.clock.now() >= 9_950);
    expect(r.calls).toEqual([]);
    expect(actor.getSnapshot().matches({ confirming: 'waiting' })).toBe(true);
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.aborted).toBe(false);
    expect(out.fenceConfirmed && out.fenced).toBe(true);
    expect(out.recovered.map((x) => x.vmid).sort()).toEqual([100, 104, 120, 155, 159]);
    expect(r.calls[0]).toMatchObject({ actor: 'confirmFence', at: 10_000 });
    const fence = r.calls.find((c) => c.actor === 'fenceNode')!;
    expect(fence.actionId).toBe('fo:node-b:fence');
    const recovers = r.calls.filter((c) => c.actor === 'recoverGuest');
    expect(recovers.every((c) => c.at >= fence.done!)).toBe(true);
    // 104 depends on 120, which is on the same dead node: it waits for 120 to be healthy elsewhere.
    expect(recovers.find((c) => c.vmid === 104)!.at).toBe(fence.done! + 500 + fleet.byVmid.get(120)!.bootMs);
    expect(recovers.find((c) => c.vmid === 159)!.actionId).toBe('fo:159:recover:0');
    expect(r.calls.at(-1)!.actor).toBe('verifyRecovery');
    expect(out.verification).toEqual({ ok: true });
    expect(r.progress.map((p) => p.event)).toEqual(expect.arrayContaining(['FENCE.CONFIRMED', 'NODE.FENCED', 'GUEST.PLACED', 'FAILOVER.VERIFIED', 'FAILOVER.DONE']));
  });

  it('respects survivor capacity and reports the unplaced', async () => {
    const r = rig();
    const actor = createActor(r.machine, { clock: r.clock, input: failoverInput({ survivors: [{ node: 'node-a', freeSlots: 2 }, { node: 'node-c', freeSlots: 1 }] }) }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.recovered).toEqual([{ vmid: 120, to: 'node-a' }, { vmid: 155, to: 'node-a' }, { vmid: 159, to: 'node-c' }]);
    expect(out.unplaced).toEqual([100, 104]);
    expect(r.calls.filter((c) => c.actor === 'recoverGuest').map((c) => c.vmid).sort()).toEqual([120, 155, 159]);
    expect(r.progress.filter((p) => p.event === 'GUEST.UNPLACED').map((p) => p.vmid)).toEqual([100, 104]);
  });

  it('NODE.REACHABLE during the fence delay aborts: nothing is fenced or recovered', async () => {
    const r = rig();
    const actor = createActor(r.machine, { clock: r.clock, input: failoverInput() }).start();
    await runUntil(actor, r.clock, () => r.clock.now() >= 5000);
    actor.send({ type: 'NODE.REACHABLE' });
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(actor.getSnapshot().value).toBe('aborted');
    expect(out.aborted).toBe(true);
    expect(out.reason).toMatch(/reachable/);
    expect(r.calls).toEqual([]);
  });

  it.each([
    ['the cluster still shows the node online', { offline: false }, /does not show the node offline: node-b: online=0/],
    ['the cluster status cannot be read', { offline: 'throw' as const }, /could not confirm.*cluster status unavailable/],
    ['fencing fails', { fence: 'throw' as const }, /fencing failed: fence failed/],
  ])('aborts without recovering when %s', async (_name, opts, reason) => {
    const r = rig(opts);
    const actor = createActor(r.machine, { clock: r.clock, input: failoverInput() }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.aborted).toBe(true);
    expect(out.reason).toMatch(reason);
    expect(r.calls.filter((c) => c.actor === 'recoverGuest')).toEqual([]);
    expect(out.recovered).toEqual([]);
  });

  it('has exactly one way into recovering: a successful fenceNode', () => {
    const into: string[] = [];
    const visit = (node: { id: string; transitions: Map<string, { target?: readonly { id: string }[] }[]>; always?: { target?: readonly { id: string }[] }[]; states: Record<string, unknown> }) => {
      for (const [event, ts] of node.transitions) for (const t of ts) if (t.target?.some((s) => s.id === 'failover.recovering')) into.push(`${node.id} ${event}`);
      for (const t of node.always ?? []) if (t.target?.some((s) => s.id === 'failover.recovering')) into.push(`${node.id} always`);
      for (const child of Object.values(node.states)) visit(child as typeof node);
    };
    visit(NodeFailoverMachine.root as unknown as Parameters<typeof visit>[0]);
    expect(into).toHaveLength(1);
    expect(into[0]).toMatch(/^failover\.fencing xstate\.done\.actor\./);
  });

  it('late NODE.REACHABLE after the fence is confirmed changes nothing', async () => {
    const r = rig();
    const actor = createActor(r.machine, { clock: r.clock, input: failoverInput() }).start();
    await runUntil(actor, r.clock, () => actor.getSnapshot().matches('recovering'));
    actor.send({ type: 'NODE.REACHABLE' });
    await runUntil(actor, r.clock);
    expect(actor.getSnapshot().output!.recovered).toHaveLength(5);
  });

  it('a failed recovery holds what depends on it on the same node', async () => {
    const r = rig({ recover: (v) => (v === 120 ? 'throw' : 'ok') });
    const actor = createActor(r.machine, { clock: r.clock, input: failoverInput() }).start();
    await runUntil(actor, r.clock);
    const out = actor.getSnapshot().output!;
    expect(out.failed).toEqual([120]);
    expect(out.held).toEqual([104]);
    expect(out.recovered.map((x) => x.vmid).sort()).toEqual([100, 155, 159]);
    expect(out.reasons['120']).toMatch(/migrate failed/);
  });

  it('reports a failed verification', async () => {
    const r = rig({ verify: { ok: false, problems: ['159 runs on node-a and node-b'] } });
    const actor = createActor(r.machine, { clock: r.clock, input: failoverInput() }).start();
    await runUntil(actor, r.clock);
    expect(actor.getSnapshot().output!.verification).toEqual({ ok: false, problems: ['159 runs on node-a and node-b'] });
  });

  it('restored during the fence delay, RESUME waits the full delay again', async () => {
    const first = rig();
    const a = createActor(first.machine, { clock: first.clock, input: failoverInput() }).start();
    await runUntil(a, first.clock, () => first.clock.now() >= 8000);
    const snapshot = JSON.parse(JSON.stringify(a.getPersistedSnapshot()));
    a.stop();
    const second = rig();
    const b = createActor(second.machine, { clock: second.clock, snapshot, input: failoverInput() }).start();
    b.send({ type: 'RESUME' });
    await runUntil(b, second.clock);
    expect(second.calls[0]).toMatchObject({ actor: 'confirmFence', at: 10_000 });
    expect(b.getSnapshot().output!.recovered).toHaveLength(5);
  });

  it('persist → restore mid-recovery: same result, completed recoveries not repeated, fence not repeated', async () => {
    const reference = rig();
    const whole = createActor(reference.machine, { clock: reference.clock, input: failoverInput() }).start();
    await runUntil(whole, reference.clock);

    const first = rig();
    const a = createActor(first.machine, { clock: first.clock, input: failoverInput() }).start();
    await runUntil(a, first.clock, () => first.calls.filter((c) => c.actor === 'recoverGuest' && c.done).length >= 4);
    const snapshot = JSON.parse(JSON.stringify(a.getPersistedSnapshot()));
    a.stop();
    const completed = new Set(first.calls.filter((c) => c.actor === 'recoverGuest' && c.done).map((c) => c.actionId));

    const second = rig();
    const b = createActor(second.machine, { clock: second.clock, snapshot, input: failoverInput() }).start();
    b.send({ type: 'RESUME' });
    await runUntil(b, second.clock);
    expect(b.getSnapshot().output!.recovered).toEqual(whole.getSnapshot().output!.recovered);
    expect(second.calls.filter((c) => c.actor === 'fenceNode' || c.actor === 'confirmFence')).toEqual([]);
    expect(second.calls.filter((c) => completed.has(c.actionId))).toEqual([]);
  });
});
