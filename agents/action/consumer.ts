// A durable JetStream consumer that works on several messages at once (one slow boot must not
// hold up the rest), keeps each in progress with `working()` heartbeats, and on stop hands the
// unfinished ones back at once (nak) so a restarted agent resumes them without waiting ack_wait.
import { setMaxListeners } from 'node:events';
import { AckPolicy, DeliverPolicy, type JsMsg } from '@nats-io/jetstream';
import { backoffMs, sleep, type Logger } from '../../core/mod.ts';
import { AUDIT_STREAM, decode, isNatsUnavailable, PULL_EXPIRES_MS, TRANSIENT_RETRY_MS, type Bus, type Envelope, type Stoppable } from '../../bus/mod.ts';

export interface ConcurrentConsumerOptions<T> {
  durable: string;
  filter: string;
  ackWaitMs: number;
  maxInFlight: number;
  /** Deliveries before the server gives up on a message (it is then dead-lettered). */
  maxDeliver: number;
  /** On first creation, also deliver what was published this long before. */
  catchUpMs: number;
  /** Two deliveries with the same key never run at once; the later one waits for the first. */
  keyOf: (env: Envelope<T>) => string;
  /** Handlers that gave their place back (`givePlace`) and still run: at most this many (their
   *  messages stay unacknowledged, with heartbeats, until they end). Default 0: none. */
  maxParked?: number;
  /** `givePlace()`: the handler only waits now (e.g. for its guest to boot) and lets the next message
   *  start; false (and nothing changes) when `maxParked` handlers already wait that way. */
  handler: (env: Envelope<T>, signal: AbortSignal, givePlace: () => boolean) => Promise<'ack' | 'retry' | 'interrupted'>;
  log: Logger;
}

export async function consumeConcurrently<T>(bus: Bus, o: ConcurrentConsumerOptions<T>): Promise<Stoppable> {
  const maxParked = Math.max(0, o.maxParked ?? 0);
  const cfg = {
    durable_name: o.durable,
    ack_policy: AckPolicy.Explicit,
    filter_subject: o.filter,
    // created for the first time: pick up what was approved within the dedup window before it
    // (the agents of a deployment start in any order); done markers cover what already ran
    deliver_policy: DeliverPolicy.StartTime,
    opt_start_time: new Date(Date.now() - o.catchUpMs).toISOString(),
    ack_wait: o.ackWaitMs * 1_000_000,
    // pulled and waiting for a place, running, and parked: all unacknowledged
    max_ack_pending: Math.max(o.maxInFlight * 4, 64) + maxParked,
    max_deliver: o.maxDeliver,
  };
  const advisory = await bus.ensureDurable(AUDIT_STREAM, cfg);
  const consumer = await bus.js.consumers.get(AUDIT_STREAM, o.durable);
  const messages = await consumer.consume({ max_messages: o.maxInFlight, expires: PULL_EXPIRES_MS });
  const stopping = new AbortController();
  // every handler in flight (and every verifying one) listens on it: no leak, so no limit of 10
  setMaxListeners(0, stopping.signal);
  /** Every handler still running, parked or not (stop waits for them all). */
  const inFlight = new Set<Promise<void>>();
  /** Handlers holding a place, and those that gave theirs back. */
  let places = 0;
  let parked = 0;
  let wake: (() => void) | undefined;
  const placeFreed = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  /** key → the run in progress and the stream sequence it is working on */
  const byKey = new Map<string, { seq: number; run: Promise<void> }>();

  const work = async (m: JsMsg, env: Envelope<T>, key: string, givePlace: () => boolean, before?: Promise<void>) => {
    const heartbeat = setInterval(() => m.working(), Math.max(100, o.ackWaitMs / 3));
    try {
      await before;
      if (stopping.signal.aborted) return m.nak();
      // failing because NATS cannot answer (a leader election): tried again on this delivery, the
      // heartbeat keeping it ours, rather than naked until max_deliver gives up on it (bus/bus.ts)
      let r: Awaited<ReturnType<typeof o.handler>> | undefined;
      for (let tries = 1, since = Date.now(); r === undefined; tries++) {
        try {
          r = await o.handler(env, stopping.signal, givePlace);
        } catch (e) {
          if (stopping.signal.aborted || !isNatsUnavailable(e) || Date.now() - since >= TRANSIENT_RETRY_MS) throw e;
          if (tries === 1) o.log.warn({ subject: m.subject, err: (e as Error).message }, 'action handler failed while NATS is unavailable; retrying it on this delivery');
          await sleep(backoffMs(tries, { baseMs: 250, maxMs: 3000 }), stopping.signal);
        }
      }
      if (r === 'ack') {
        m.ack();
        bus.noteAck(o.durable);
      } else if (r === 'interrupted') m.nak();
      else m.nak(Math.min(500 * 2 ** m.info.deliveryCount, 10_000));
    } catch (e) {
      if (stopping.signal.aborted) return m.nak();
      o.log.warn({ subject: m.subject, attempt: m.info.deliveryCount, err: (e as Error).message }, 'action handler failed; will retry');
      m.nak(Math.min(500 * 2 ** m.info.deliveryCount, 10_000));
    } finally {
      clearInterval(heartbeat);
    }
  };

  const loop = (async () => {
    for await (const m of messages) {
      const r = decode<T>(m.subject, m.data);
      if (!r.ok) {
        await bus.rejectPoison(o.durable, m, r.reason);
        continue;
      }
      const key = o.keyOf(r.env);
      const current = byKey.get(key);
      // a redelivery of the message already being worked on: the running handler will ack it
      if (current && current.seq === m.seq) continue;
      while (places >= o.maxInFlight) await new Promise<void>((r) => (wake = r));
      places++;
      let holds = true;
      const givePlace = () => {
        if (!holds) return true;
        if (parked >= maxParked) return false;
        holds = false;
        parked++;
        places--;
        placeFreed();
        return true;
      };
      const run: Promise<void> = work(m, r.env, key, givePlace, current?.run);
      const entry = { seq: m.seq, run };
      byKey.set(key, entry);
      inFlight.add(run);
      // work() handles its own errors; a nak on a closed connection is all that can still throw
      void run.catch(() => undefined).then(() => {
        inFlight.delete(run);
        if (byKey.get(key) === entry) byKey.delete(key);
        if (holds) {
          holds = false;
          places--;
          placeFreed();
        } else parked--;
      });
    }
  })();

  return {
    async stop() {
      stopping.abort(new Error('action agent stopping'));
      await advisory.stop();
      await Promise.allSettled([...inFlight]);
      await messages.close().catch(() => undefined);
      await loop.catch(() => undefined);
    },
  };
}
