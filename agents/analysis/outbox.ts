// Publishes what the analyzer decided without making the next event wait for the last one's
// acks: messages about the same incident (or the same alert) go out strictly in order, each
// waiting for the previous one's ack; everything else goes out at once.
//
// Why not ack an event only after its messages are stored: the analyzer has already moved on by
// then, so a redelivered event would produce nothing new anyway. Nothing is dropped after a fixed
// time: a write waits out a NATS outage of any length (publish and KV put retry until stored or
// stopped; while the replica's lease is paused, its gate holds every attempt), and above OUTBOX_HIGH_WATER unwritten messages producers wait (said once per crossing).
// After a restart `reconcile()` re-derives whatever incident is missing from the fleet state.
import { setMaxListeners } from 'node:events';
import { sleep, type Gate, type Logger } from '../../core/mod.ts';
import { encodeOwn, kvKeys, makeEnvelope, subjects, type Bus, type IncidentPhase } from '../../bus/mod.ts';
import type { Output } from './analyzer.ts';

const INCIDENT_TYPE: Record<IncidentPhase, string> = { opened: 'IncidentOpened', updated: 'IncidentUpdated', acknowledged: 'IncidentAcknowledged', resolved: 'IncidentResolved' };
/** Above this many unwritten messages, producers wait (backpressure when NATS is slow). */
export const OUTBOX_HIGH_WATER = 2000;
/** Messages being written at once (each: a stream publish and a KV put, acks awaited). Unbounded,
 *  a 5,000-incident burst put every message, its bytes and its timers in memory at once (analysis
 *  peaked near 290 MB); the rest wait as plain objects, in order. */
export const OUTBOX_IN_FLIGHT = 256;

/** One message, serialised: a stream publish, and for an incident its KV record too. */
export interface Encoded {
  /** Messages of one key go out in order, each after the previous one's acks. */
  key: string;
  subject: string;
  bytes: Uint8Array;
  msgId: string;
  kv?: { key: string; bytes: Uint8Array };
}

/** An analyzer output as it goes on the wire, without a second zod pass (the analyzer builds its
 *  outputs from validated input; test/analysis-rules validates every output it sees). */
export function encodeOutput(source: string, o: Output): Encoded {
  if (o.kind === 'alert') {
    const a = o.alert;
    const subject = subjects.alert(a.name);
    const env = makeEnvelope(source, a.status === 'firing' ? 'AlertFired' : 'AlertResolved', a, { causationId: o.causationId, correlationId: o.correlationId });
    return { key: `alert:${a.fingerprint}`, subject, bytes: encodeOwn(subject, env), msgId: env.id };
  }
  const inc = o.incident;
  // one serialisation for the stream message and the KV record
  const json = JSON.stringify(inc);
  const subject = subjects.incident(inc.id, o.phase);
  const env = makeEnvelope(source, INCIDENT_TYPE[o.phase], inc, { causationId: o.causationId, correlationId: inc.id });
  return { key: `incident:${inc.id}`, subject, bytes: encodeOwn(subject, env, json), msgId: env.id, kv: { key: kvKeys.incident(inc.id), bytes: Buffer.from(json, 'utf8') } };
}

export class Outbox {
  private readonly tails = new Map<string, Promise<void>>();
  private readonly inflight = new Set<Promise<void>>();
  private queued = 0;
  private full = false;
  private readonly stopping = new AbortController();
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly lowWaiters: { level: number; resolve: () => void }[] = [];
  sent = 0;
  failed = 0;

  /** `observe` sees every batch as it is queued (metrics), with the triggering event's time when known. */
  /** `gate`: closed while this replica must not act (its singleton lease is paused); writes wait. */
  constructor(private readonly bus: Bus, private readonly log: Logger, private readonly observe?: (outputs: Output[], seenAt?: number) => void, private readonly gate?: Gate) {
    // every write in flight listens on it
    setMaxListeners(0, this.stopping.signal);
  }

  get pending(): number {
    return this.queued;
  }

  /** Queue one step's messages; resolves once they were written (or the failure was logged). Never rejects. */
  send(outputs: Output[], seenAt?: number): Promise<void> {
    if (!outputs.length) return Promise.resolve();
    this.observe?.(outputs, seenAt);
    this.queued += outputs.length;
    // serialised now, once: what waits for its turn is bytes, not objects the analyzer goes on changing
    const writes = outputs.map((o) => {
      let m: Encoded;
      try {
        m = encodeOutput(this.bus.source, o);
      } catch (e) {
        return Promise.reject(e as Error);
      }
      return this.after(m.key, () => this.limited(() => this.write(m)));
    });
    const all = Promise.allSettled(writes).then((results) => {
      this.queued -= outputs.length;
      if (this.lowWaiters.length) this.wake();
      const bad = results.filter((r) => r.status === 'rejected');
      this.sent += outputs.length - bad.length;
      this.failed += bad.length;
      if (bad.length) {
        const err = ((bad[0] as PromiseRejectedResult).reason as Error).message;
        this.log.error({ err, messages: bad.length }, 'could not publish analysis results; a restart reconciles from KV');
      }
    });
    this.inflight.add(all);
    void all.then(() => this.inflight.delete(all));
    return all;
  }

  /** Resolves once at most `level` messages are unwritten (a producer's backpressure that keeps
   *  the pipeline full, where waiting for its own messages would write one event at a time). */
  below(level: number): Promise<void> {
    if (this.queued <= level) return Promise.resolve();
    return new Promise((resolve) => this.lowWaiters.push({ level, resolve }));
  }

  private wake(): void {
    const still = this.lowWaiters.filter((w) => this.queued > w.level);
    const go = this.lowWaiters.filter((w) => this.queued <= w.level);
    this.lowWaiters.length = 0;
    this.lowWaiters.push(...still);
    for (const w of go) w.resolve();
  }

  /** Queue, and wait only when too much is already waiting. */
  async offer(outputs: Output[]): Promise<void> {
    const p = this.send(outputs);
    if (this.queued <= OUTBOX_HIGH_WATER) return;
    if (!this.full) {
      this.full = true;
      this.log.warn({ pending: this.queued, highWater: OUTBOX_HIGH_WATER }, 'analysis outbox full (NATS slow or away): producers wait');
    }
    await p;
    if (this.full && this.queued <= OUTBOX_HIGH_WATER / 2) {
      this.full = false;
      this.log.info({ pending: this.queued }, 'analysis outbox drained below its high-water mark');
    }
  }

  /** Stop retrying writes (shutdown): what is unwritten is re-derived from KV at the next start. */
  abandon(): void {
    this.stopping.abort();
  }

  /** Resolves when everything queued so far was written. */
  async idle(): Promise<void> {
    while (this.inflight.size) await Promise.allSettled([...this.inflight]);
  }

  private after(key: string, fn: () => Promise<unknown>): Promise<void> {
    const prev = this.tails.get(key);
    // nothing of this key in flight: write now, so one step's messages leave in one socket write
    // (chained through a resolved promise, each would be flushed on its own)
    const next = prev ? prev.then(async () => void (await fn())) : fn().then(() => undefined);
    // the next message of this key runs after this one, whether it worked or not
    const tail = next.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }

  /** At most OUTBOX_IN_FLIGHT writes at once; a finished one hands its slot to the next in line. */
  private async limited(fn: () => Promise<void>): Promise<void> {
    if (this.active < OUTBOX_IN_FLIGHT) this.active++;
    else await new Promise<void>((r) => this.waiting.push(r));
    try {
      await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }

  private async write(m: Encoded): Promise<void> {
    const signal = this.stopping.signal;
    const publish = () => this.bus.publishEncoded(m.subject, m.bytes, m.msgId, { signal, retryForMs: 0 });
    if (!m.kv) return this.untilStored(publish);
    const kv = m.kv;
    await Promise.all([this.untilStored(publish), this.untilStored(() => this.bus.kvPutBytes(this.bus.kv.incidents, kv.key, kv.bytes))]);
  }

  /** Every attempt waits while the gate is closed (the lease paused: nothing goes out); a stream
   *  publish is deduplicated on its id and a KV put is a last-value write, so repeating either
   *  until it is stored is safe. */
  private async untilStored(fn: () => Promise<unknown>): Promise<void> {
    for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
      if (this.gate && !this.gate.open) await this.gate.wait(this.stopping.signal);
      try {
        await fn();
        return;
      } catch (e) {
        if (this.stopping.signal.aborted || this.bus.nc.isClosed()) throw e;
        await sleep(delay, this.stopping.signal);
      }
    }
  }
}
