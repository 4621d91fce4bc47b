// Shared by the client commands: config from env + --nats, a short-lived bus connection.
import { HomeostatError } from '../core/mod.ts';
import { Bus, subjects } from '../bus/mod.ts';
import { loadConfig, type Config } from '../agents/runtime/config.ts';
import { loadFleetFile, type Fleet } from '../fleet/manifest.ts';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { readReady } from './data-dir.ts';

/** --nats, then NATS_URL, then the `up` running on ./.homeostat (or $HOMEOSTAT_DATA_DIR), then the default. */
export function natsUrlFor(natsFlag: string | undefined): string | undefined {
  if (natsFlag || process.env.NATS_URL) return natsFlag;
  return readReady()?.natsUrl;
}

export async function withBus<T>(natsFlag: string | undefined, fn: (bus: Bus, config: Config) => Promise<T>): Promise<T> {
  const config = loadConfig(process.env, { NATS_URL: natsUrlFor(natsFlag) });
  let bus: Bus;
  try {
    bus = await Bus.connect({ servers: config.NATS_URL, source: 'cli', connectTimeoutMs: 3000 });
  } catch (e) {
    throw new HomeostatError('HOMEOSTAT_ERR_NATS_UNAVAILABLE', `cannot reach NATS at ${config.NATS_URL}; is \`homeostat up\` running? (${(e as Error).message})`, { cause: e });
  }
  try {
    return await fn(bus, config);
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
