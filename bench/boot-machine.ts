// The boot machine alone, in this process: LayeredBootMachine over a generated fleet, actors that
// "boot" each guest in its bootMs × scale (real timers, no I/O), against the critical path of the
// same boot times. Shows what the machine itself costs per event, at 1,000 and 5,000 guests (a step
// costs what it changes, so the cost per event must not grow with the fleet).
//
// What profiling this (node --cpu-prof --import tsx bench/boot.ts, BENCH_BOOT=machine) taught:
// - One spawned child per step was O(n²): xstate's spawnChild / stopChild copy the machine's whole
//   children map, and each child stop scans every pending delayed event (the per-guest timeouts).
//   resolveSpawn + resolveStop were 9.0 s of the 10.3 s the machines spent (1,000 + 5,000 guests);
//   5,000 guests took 2.0-9.3x the critical path depending on load. Now one `guestSteps` driver per
//   run (state-machines/children.ts) runs every step.
// - Copying a pipeline bucket keyed by bare vmids was next: sparse integer keys put an object in
//   V8's dictionary mode and its spread costs ~20x a string-keyed one. Keys are `g<vmid>` now.
// - Process CPU per event mixes in the stand-in actors, timers and the JIT warming up (the first
//   run pays it), so the machine's own time is measured apart: from the moment the machine takes an
//   event to its new snapshot (xstate's inspection events), after a short warm-up run.
import { createActor, fromPromise, toPromise } from 'xstate';
import { sleep } from '../core/mod.ts';
import { criticalPathMs, type Fleet } from '../fleet/manifest.ts';
import { LayeredBootMachine, type BootSummary, type StartGuestInput, type WaitHealthyInput, type WaitHealthyOutput } from '../state-machines/mod.ts';

export interface MachineRun {
  guests: number;
  criticalPathMs: number;
  wallMs: number;
  /** Transitions of the machine (events it handled). */
  events: number;
  /** Process CPU during the run per event: the machine's steps plus the trivial stand-in actors. */
  cpuUsPerEvent: number;
  /** Time the machine itself spent per event (taking the event to its next snapshot). */
  machineUsPerEvent: number;
}

export async function runBootMachine(fleet: Fleet, scale: number): Promise<MachineRun> {
  const bootMs = new Map(fleet.guests.map((g) => [g.vmid, g.bootMs * scale]));
  const machine = LayeredBootMachine.provide({
    actors: {
      startGuest: fromPromise<unknown, StartGuestInput>(async () => undefined),
      waitHealthy: fromPromise<WaitHealthyOutput, WaitHealthyInput>(async ({ input, signal }) => {
        await sleep(bootMs.get(input.vmid) ?? 0, signal);
        return { at: Date.now() };
      }),
    },
  });
  const guests = fleet.guests.map((g) => ({
    vmid: g.vmid, node: g.node, layer: g.layer, dependsOn: fleet.deps.get(g.vmid) ?? [], bootTimeoutMs: 600_000, expectedBootMs: g.bootMs,
  }));
  const startedAt = Date.now();
  let machineMs = 0;
  let took: number | undefined;
  const actor = createActor(machine, {
    input: { workflowId: 'bench', guests, perNodeConcurrency: fleet.guests.length, retries: 0, startedAt },
    inspect: (ev) => {
      if (ev.actorRef.sessionId !== ev.rootId) return; // the machine, not its driver or steps
      if (ev.type === '@xstate.event') took = performance.now();
      else if (ev.type === '@xstate.snapshot' && took !== undefined) {
        machineMs += performance.now() - took;
        took = undefined;
      }
    },
  });
  let events = 0;
  actor.subscribe(() => void events++);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  actor.start();
  const out = (await toPromise(actor)) as BootSummary;
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  if (out.healthy.length !== fleet.guests.length) throw new Error(`boot machine: ${out.healthy.length}/${fleet.guests.length} healthy`);
  return {
    guests: fleet.guests.length,
    criticalPathMs: criticalPathMs(fleet) * scale,
    wallMs: out.durationMs ?? wallMs,
    events,
    cpuUsPerEvent: (cpu.user + cpu.system) / Math.max(1, events),
    machineUsPerEvent: (machineMs * 1000) / Math.max(1, events),
  };
}
