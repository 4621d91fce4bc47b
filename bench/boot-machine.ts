// The boot machine alone, in this process: LayeredBootMachine over a generated fleet, actors that
// "boot" each guest in its bootMs × scale (real timers, no I/O), against the critical path of the
// same boot times. Shows what the machine itself costs: CPU per event, at 1,000 and 5,000 guests
// (a step costs what it changes, so the cost per event must not grow with the fleet).
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
  const actor = createActor(machine, { input: { workflowId: 'bench', guests, perNodeConcurrency: fleet.guests.length, retries: 0, startedAt } });
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
  };
}
