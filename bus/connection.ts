// Connects once, then reconnects forever with capped exponential backoff and jitter.
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { backoffMs, HomeostatError, retry, type Logger } from '../core/mod.ts';

export interface ConnectOptions {
  servers: string;
  name: string;
  log: Logger;
  /** How long the first connection may take before giving up (ms). */
  firstConnectTimeoutMs?: number;
}

export async function connectNats(opts: ConnectOptions): Promise<NatsConnection> {
  let failures = 0;
  const deadline = Date.now() + (opts.firstConnectTimeoutMs ?? 10_000);
  try {
    return await retry(async () => {
      const nc = await connect({
        servers: opts.servers,
        name: opts.name,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        // backoff between reconnect rounds: 250 ms doubling to 5 s, jittered; reset on success
        reconnectDelayHandler: () => backoffMs(++failures, { baseMs: 250, maxMs: 5000 }),
        pingInterval: 10_000,
        maxPingOut: 3,
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
    }, { baseMs: 100, maxMs: 400, retryable: () => Date.now() < deadline });
  } catch (e) {
    throw new HomeostatError('HOMEOSTAT_ERR_NATS_UNAVAILABLE', `cannot connect to NATS at ${opts.servers}: ${(e as Error)?.message ?? 'timeout'}`, { cause: e });
  }
}
