// Shared by the client commands: config from env + --nats, a short-lived bus connection.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { HomeostatError, isHomeostatError } from '../core/mod.ts';
import { Bus, readIdentity, subjects, type Identity } from '../bus/mod.ts';
import { loadConfig, type Config } from '../agents/runtime/config.ts';
import { loadFleetFile, type Fleet } from '../fleet/manifest.ts';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { DEFAULT_DATA_DIR, readReady } from './data-dir.ts';

/** --nats, then NATS_URL, then the `up` running on ./.homeostat (or $HOMEOSTAT_DATA_DIR), then the default. */
export function natsUrlFor(natsFlag: string | undefined): string | undefined {
  if (natsFlag || process.env.NATS_URL) return natsFlag;
  return readReady()?.natsUrl;
}

/** Who the CLI is: NATS_CREDS / --creds, else the operator file of the `up` on ./.homeostat (or
 *  $HOMEOSTAT_DATA_DIR), so the README's quick start needs no flags. */
export function operatorIdentity(config: Config): Identity | undefined {
  const dir = process.env.HOMEOSTAT_DATA_DIR || DEFAULT_DATA_DIR;
  const fallback = join(dir, 'creds', 'operator.nk');
  const file = config.NATS_CREDS ?? (readReady()?.natsCreds as string | undefined) ?? (existsSync(fallback) ? fallback : undefined);
  return file ? readIdentity(file) : undefined;
}

/** `flags`: --nats (a string, or the parsed common options with --nats and --creds). */
export async function withBus<T>(flags: string | undefined | { nats?: string; creds?: string }, fn: (bus: Bus, config: Config, identity?: Identity) => Promise<T>): Promise<T> {
  const f = typeof flags === 'object' ? flags : { nats: flags };
  const config = loadConfig(process.env, { NATS_URL: natsUrlFor(f.nats), NATS_CREDS: f.creds });
  const identity = operatorIdentity(config);
  let bus: Bus;
  try {
    bus = await Bus.connect({ servers: config.NATS_URL, source: 'cli', connectTimeoutMs: 3000, seed: identity?.seed, caFile: config.NATS_CA });
  } catch (e) {
    if (isHomeostatError(e, 'HOMEOSTAT_ERR_AUTH')) throw e;
    throw new HomeostatError('HOMEOSTAT_ERR_NATS_UNAVAILABLE', `cannot reach NATS at ${config.NATS_URL}; is \`homeostat up\` running? (${(e as Error).message})`, { cause: e });
  }
  try {
    return await fn(bus, config, identity);
  } finally {
    await bus.stop();
  }
}

/** Send `fleet.cmd.<verb>` and return its result. */
export async function command<R = unknown>(bus: Bus, verb: string, args: Record<string, unknown>, timeoutMs = 10_000): Promise<R> {
  return bus.request<R>(subjects.cmd(verb), 'Command', { args, requestedBy: `cli:${process.env.USER ?? 'operator'}` }, timeoutMs);
}

export function loadFleetForCli(file: string | undefined, config: Config): Fleet {
  const f = file ?? config.HOMEOSTAT_FLEET;
  return f ? loadFleetFile(f) : referenceFleet();
}
