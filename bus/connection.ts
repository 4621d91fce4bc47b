// Connects once, then reconnects forever with capped exponential backoff and jitter.
import { connect, nkeyAuthenticator, type NatsConnection } from '@nats-io/transport-node';
import { backoffMs, HomeostatError, retry, type Logger } from '../core/mod.ts';

export interface ConnectOptions {
  /** One URL or a comma-separated list (a cluster): the client reconnects to any of them. */
  servers: string;
  name: string;
  log: Logger;
  /** How long the first connection may take before giving up (ms). */
  firstConnectTimeoutMs?: number;
  /** The nkey seed of this process's identity (auth on the embedded server). */
  seed?: string;
  /** CA bundle (PEM file) for tls:// servers. */
  caFile?: string;
}

/** An authorization failure will not go away by retrying: say so at once. */
function isAuthError(e: unknown): boolean {
  const m = String((e as Error)?.message ?? '');
  return /authorization violation|authentication|permissions violation/i.test(m) || (e as { name?: string })?.name === 'AuthorizationError';
}

export async function connectNats(opts: ConnectOptions): Promise<NatsConnection> {
  let failures = 0;
  const deadline = Date.now() + (opts.firstConnectTimeoutMs ?? 10_000);
  try {
    return await retry(async () => {
      const nc = await connect({
        servers: serverList(opts.servers),
        name: opts.name,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        // backoff between reconnect rounds: 250 ms doubling to 5 s, jittered; reset on success
        reconnectDelayHandler: () => backoffMs(++failures, { baseMs: 250, maxMs: 5000 }),
        pingInterval: 10_000,
        // Profiled (bench/pipeline): with async traces on, every request (each JetStream publish
        // and KV put) builds two Error objects with stack traces up front, ~8 % of a busy
        // agent's CPU. Our errors carry codes and causes instead.
        noAsyncTraces: true,
        maxPingOut: 3,
        ...(opts.seed ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(opts.seed)) } : {}),
        ...(opts.caFile ? { tls: { caFile: opts.caFile } } : {}),
      });
      void (async () => {
        for await (const s of nc.status()) {
          if (s.type === 'reconnect') {
            failures = 0;
            opts.log.info({ server: String((s as { server?: unknown }).server ?? '') }, 'nats reconnected');
          } else if (s.type === 'disconnect') {
            opts.log.warn({ server: String((s as { server?: unknown }).server ?? '') }, 'nats disconnected, reconnecting');
          }
        }
      })().catch(() => undefined);
      return nc;
    }, { baseMs: 100, maxMs: 400, retryable: (e) => !isAuthError(e) && Date.now() < deadline });
  } catch (e) {
    if (isAuthError(e)) {
      throw new HomeostatError('HOMEOSTAT_ERR_AUTH', `NATS at ${opts.servers} refused ${opts.seed ? 'this identity' : 'a connection without credentials'}: ${(e as Error).message}`, { cause: e });
    }
    throw new HomeostatError('HOMEOSTAT_ERR_NATS_UNAVAILABLE', `cannot connect to NATS at ${opts.servers}: ${(e as Error)?.message ?? 'timeout'}`, { cause: e });
  }
}

export function serverList(servers: string): string[] {
  return servers.split(',').map((s) => s.trim()).filter(Boolean);
}
