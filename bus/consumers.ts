// Durable consumers that poison cannot block: created or brought up to date at start, a delivery
// limit on every one, and its max-deliveries advisory turned into one dead letter with a reason.
//
// nats-server 2.9 (Debian, compose) honours a plain `+TERM` only: `+TERM <reason>` (what nats.js
// sends for `term(reason)`) is taken for an unknown ack and the message comes back forever. So the
// reason goes into the dead letter and the server gets the bare `+TERM`.
import type { NatsConnection } from '@nats-io/transport-node';
import type { ConsumerConfig, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import { type Logger } from '../core/mod.ts';

/** How long each pull of a durable's `consume()` waits at the server (nats.js default: 30 s).
 *  The client sends heartbeats' expectations from it (idle heartbeat = half of it) and pulls
 *  again after two missed ones. A pull dies with the consumer's leader (the nats-server holding
 *  it SIGKILLed, bench/scale): with the default the client noticed after 15–30 s, and every crash
 *  in that window waited (MTTR p50 22 s after the kill). At 3 s a lost pull is renewed within 3 s;
 *  an idle durable costs a pull every 3 s and a heartbeat every 1.5 s. */
export const PULL_EXPIRES_MS = 3000;

/** How long a handler that fails because NATS cannot answer is retried on the same delivery
 *  (a leader election of a 3-server cluster under load took up to ~30 s in bench/scale). */
export const TRANSIENT_RETRY_MS = 120_000;

const UNAVAILABLE_NAMES = new Set(['TimeoutError', 'NoRespondersError', 'ConnectionError', 'ClosedConnectionError', 'RequestError']);
const UNAVAILABLE_CODES = new Set(['HOMEOSTAT_ERR_NATS_UNAVAILABLE', 'TIMEOUT', '503', 'ECONNRESET', 'ECONNREFUSED']);
const UNAVAILABLE_TEXT = /temporarily unavailable|no responders|jetstream is not enabled|jetstream not (enabled|available)|\btimeout\b|timed out/i;

/** The error says NATS (or JetStream) could not answer, not that the work itself is wrong:
 *  worth retrying once the cluster has a leader again. Looks through `cause` too. */
export function isNatsUnavailable(e: unknown): boolean {
  for (let x = e, depth = 0; x instanceof Error && depth < 5; x = (x as { cause?: unknown }).cause, depth++) {
    const code = (x as { code?: unknown }).code;
    if (UNAVAILABLE_NAMES.has(x.name) || (code !== undefined && UNAVAILABLE_CODES.has(String(code))) || UNAVAILABLE_TEXT.test(x.message)) return true;
  }
  return false;
}

/** Fields a running durable may change (deliver policy and filter are fixed at creation). */
const UPDATABLE = ['ack_wait', 'max_deliver', 'max_ack_pending', 'backoff', 'description'] as const;

export type DurableConfig = Partial<ConsumerConfig> & { durable_name: string; max_deliver: number };

/** Create the durable, or update what differs from `cfg` on the one the server holds. */
export async function ensureConsumer(jsm: JetStreamManager, stream: string, cfg: DurableConfig, log?: Logger): Promise<void> {
  let current: ConsumerConfig | undefined;
  try {
    current = (await jsm.consumers.info(stream, cfg.durable_name)).config;
  } catch (e) {
    if (!/not found/i.test(String((e as Error).message))) throw e;
  }
  if (!current) {
    try {
      await jsm.consumers.add(stream, cfg);
      return;
    } catch (e) {
      // a replica of the same agent created it first (with its own start time): use that one
      current = (await jsm.consumers.info(stream, cfg.durable_name).catch(() => { throw e; })).config;
    }
  }
  const changed: Partial<ConsumerConfig> = {};
  for (const k of UPDATABLE) {
    if (cfg[k] !== undefined && JSON.stringify(cfg[k]) !== JSON.stringify(current[k])) (changed as Record<string, unknown>)[k] = cfg[k];
  }
  if (!Object.keys(changed).length) return;
  await jsm.consumers.update(stream, cfg.durable_name, changed);
  log?.info({ stream, durable: cfg.durable_name, changed: Object.keys(changed) }, 'durable consumer config updated');
}

/** Terminate a message in the one form every server version honours (see the top). */
export function terminate(m: JsMsg): void {
  m.term();
}

/** One dead letter per bad message per consumer: the id JetStream deduplicates the letter on. */
export function deadLetterId(durable: string, streamSeq: number): string {
  return `dlq.${durable}.${streamSeq}`;
}

export const maxDeliveriesAdvisory = (stream: string, durable: string) => `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${stream}.${durable}`;

export interface MaxDeliveries {
  streamSeq: number;
  deliveries: number;
}

/** Calls `onExhausted` for every message the server gave up on (delivered max_deliver times,
 *  never acked nor terminated: a handler that hung, or a process that died on it). */
export function watchMaxDeliveries(nc: NatsConnection, stream: string, durable: string, onExhausted: (m: MaxDeliveries) => Promise<void>, log: Logger): { stop(): void } {
  const sub = nc.subscribe(maxDeliveriesAdvisory(stream, durable));
  void (async () => {
    for await (const m of sub) {
      try {
        const a = JSON.parse(new TextDecoder().decode(m.data)) as { stream_seq?: unknown; deliveries?: unknown };
        if (typeof a.stream_seq !== 'number') continue;
        await onExhausted({ streamSeq: a.stream_seq, deliveries: typeof a.deliveries === 'number' ? a.deliveries : 0 });
      } catch (e) {
        log.error({ stream, durable, err: (e as Error).message }, 'could not dead-letter an exhausted message');
      }
    }
  })().catch((e: unknown) => log.error({ stream, durable, err: (e as Error).message }, 'max-deliveries advisory subscription ended'));
  return { stop: () => sub.unsubscribe() };
}
