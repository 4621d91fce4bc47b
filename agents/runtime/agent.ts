// The agent runtime: `start(ctx) -> { stopped, stop() }`. Dependencies come in through ctx.
import type { z } from 'zod';
import { HomeostatError, type AppLogger } from '../../core/mod.ts';
import { type Bus, type Identity } from '../../bus/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import type { PveApi } from '../../fleet/pve-types.ts';
import type { Config } from './config.ts';
import type { Metrics } from './metrics.ts';

export const AGENT_NAMES = ['sensing', 'analysis', 'decision', 'action', 'operator', 'workflows', 'notify'] as const;
export type AgentName = (typeof AGENT_NAMES)[number];

/** How the process reaches the PVE API (the simulator's, with `--sim`): what the agents' own
 *  HTTP probes of /sim/* need besides the client. */
export interface PveAccess {
  url: string;
  tokenId?: string;
  tokenSecret?: string;
  caPem?: string;
  insecure: boolean;
}

/** `O`: the agent's own options (each agent declares its type; absent fields take defaults). */
export interface AgentContext<O = object> {
  name: string;
  config: Config;
  log: AppLogger;
  bus: Bus;
  fleet: Fleet;
  /** Present when PVE_URL (or the embedded simulator) is configured. */
  pve?: PveApi;
  /** Present with `pve`. */
  pveAccess?: PveAccess;
  options: O;
  /** The agent's own identity (its NATS nkey): the decision agent signs approved actions with it. */
  identity?: Identity;
  /** The process's metrics (one registry per process); absent in tests that start an agent bare. */
  metrics?: Metrics;
}

/** What an agent reports about its own progress (AgentHandle.progress, in its heartbeat). */
export interface AgentProgress {
  counters?: Record<string, number>;
  detail?: Record<string, unknown>;
  /** The agent knows it cannot do its job (sensing: no round completes, or PVE keeps failing). */
  stalled?: { kind: 'stuck' | 'pve'; reason: string };
}

export interface AgentHandle {
  /** Resolves when the agent has stopped: undefined on a clean stop, the Error when it died. */
  stopped: Promise<void | Error>;
  stop(): Promise<void>;
  /** What the agent has done and whether it knows itself stuck (in its heartbeat). */
  progress?(now: number, stallMs: number): AgentProgress;
}

export interface AgentModule<O = object> {
  name: AgentName;
  start(ctx: AgentContext<O>): Promise<AgentHandle>;
}

/** Builds the handle from a list of cleanup steps; `fail(err)` ends the agent with an error. */
export function agentHandle(cleanup: () => Promise<void>): AgentHandle & { fail(err: Error): void } {
  let resolve!: (v: void | Error) => void;
  const stopped = new Promise<void | Error>((r) => (resolve = r));
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= cleanup().then(
      () => resolve(),
      (e: unknown) => resolve(e instanceof Error ? e : new Error(String(e))),
    );
    return stopping;
  };
  return {
    stopped,
    stop,
    fail(err: Error) {
      void cleanup().finally(() => resolve(err));
    },
  };
}

/** A loop that runs `tick` every `intervalMs` until stopped; errors are logged, never fatal. */
export function every(intervalMs: number, tick: () => Promise<void>, log: AppLogger): { stop(): Promise<void>; now(): void } {
  let stopped = false;
  let busy = false;
  let again = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const loop = async () => {
    if (stopped) return;
    clearTimeout(timer);
    busy = true;
    const t0 = Date.now();
    running = tick().catch((e: unknown) => log.error({ err: (e as Error).message }, 'periodic task failed'));
    await running;
    busy = false;
    if (stopped) return;
    const wait = again ? 0 : Math.max(0, intervalMs - (Date.now() - t0));
    again = false;
    timer = setTimeout(() => void loop(), wait);
  };
  void loop();
  return {
    /** Run the task now (right after the one in progress, if any); the interval restarts from there. */
    now() {
      if (stopped) return;
      if (busy) again = true;
      else void loop();
    },
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}

/** The `args` of a `fleet.cmd.<verb>` request, checked; a bad one is a usage error naming the field. */
export function parseCommandArgs<T>(schema: z.ZodType<T>, args: unknown, verb: string): T {
  const r = schema.safeParse(args);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `${verb}: ${i.path.length ? `args.${i.path.join('.')}: ` : ''}${i.message}`);
  }
  return r.data;
}
