// Publishes what the analyzer decided without making the next event wait for the last one's
// acks: messages about the same incident (or the same alert) go out strictly in order, each
// waiting for the previous one's ack; everything else goes out at once.
//
// Why not ack an event only after its messages are stored: the analyzer has already moved on by
// then, so a redelivered event would produce nothing new anyway. Nothing is dropped after a fixed
// time: a write waits out a NATS outage of any length (publish and KV put retry until stored or
// stopped), and above OUTBOX_HIGH_WATER unwritten messages producers wait (said once per crossing).
// After a restart `reconcile()` re-derives whatever incident is missing from the fleet state.
import { setMaxListeners } from 'node:events';
import { type Logger } from '../../core/mod.ts';
import { kvKeys, subjects, type Bus, type IncidentPhase } from '../../bus/mod.ts';
import type { Output } from './analyzer.ts';

const INCIDENT_TYPE: Record<IncidentPhase, string> = { opened: 'IncidentOpened', updated: 'IncidentUpdated', acknowledged: 'IncidentAcknowledged', resolved: 'IncidentResolved' };
/** Above this many unwritten messages, producers wait (backpressure when NATS is slow). */
export const OUTBOX_HIGH_WATER = 2000;
/** Messages being written at once (each: a stream publish and a KV put, acks awaited). Unbounded,
 *  a 5,000-incident burst put every message, its bytes and its timers in memory at once (analysis
 *  peaked near 290 MB); the rest wait as plain objects, in order. */
export const OUTBOX_IN_FLIGHT = 256;

export class Outbox {
  private readonly tails = new Map<string, Promise<void>>();
  private readonly inflight = new Set<Promise<void>>();
  private queued = 0;
  private full = false;
  private readonly stopping = new AbortController();
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  sent = 0;
  failed = 0;

  /** `observe` sees every batch as it is queued (metrics), with the triggering event's time when known. */
  constructor(private readonly bus: Bus, private readonly log: Logger, private readonly observe?: (outputs: Output[], seenAt?: number) => void) {
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
    const writes = outputs.map((o) => this.after(o.kind === 'alert' ? `alert:${o.alert.fingerprint}` : `incident:${o.incident.id}`, () => this.limited(() => this.write(o))));
    const all = Promise.allSettled(writes).then((results) => {
      this.queued -= outputs.length;
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

  private async write(o: Output): Promise<void> {
    if (o.kind === 'alert') {
      const a = o.alert;
      await this.bus.publish(subjects.alert(a.name), a.status === 'firing' ? 'AlertFired' : 'AlertResolved', a, { causationId: o.causationId, correlationId: o.correlationId, signal: this.stopping.signal });
      return;
    }
    const inc = o.incident;
    await Promise.all([
      this.bus.publish(subjects.incident(inc.id, o.phase), INCIDENT_TYPE[o.phase], inc, { causationId: o.causationId, correlationId: inc.id, signal: this.stopping.signal }),
      this.putUntilStored(kvKeys.incident(inc.id), inc),
    ]);
  }

  /** A KV put is a last-value write: repeating it until it is stored is safe. */
  private async putUntilStored(key: string, value: unknown): Promise<void> {
    for (let delay = 100; ; delay = Math.min(delay * 2, 2000)) {
      try {
        await this.bus.kvPut(this.bus.kv.incidents, key, value);
        return;
      } catch (e) {
        if (this.stopping.signal.aborted || this.bus.nc.isClosed()) throw e;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }
}
