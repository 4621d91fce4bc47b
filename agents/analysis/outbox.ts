// Publishes what the analyzer decided without making the next event wait for the last one's
// acks: messages about the same incident (or the same alert) go out strictly in order, each
// waiting for the previous one's ack; everything else goes out at once.
//
// Why not ack an event only after its messages are stored: the analyzer has already moved on by
// then, so a redelivered event would produce nothing new anyway. Nothing is dropped after a fixed
// time: a write waits out a NATS outage of any length (publish and KV put retry until stored or
// stopped; while the replica's lease is paused, its gate holds every attempt), and above
// OUTBOX_HIGH_WATER unwritten messages (or _BYTES) producers wait (said once per crossing).
// After a restart `reconcile()` re-derives whatever incident is missing from the fleet state.
import { setMaxListeners } from 'node:events';
import { sleep, type Gate, type Logger } from '../../core/mod.ts';
import { encodeOwn, kvKeys, makeEnvelope, subjects, type Bus, type IncidentPhase } from '../../bus/mod.ts';
import type { Output } from './analyzer.ts';

const INCIDENT_TYPE: Record<IncidentPhase, string> = { opened: 'IncidentOpened', updated: 'IncidentUpdated', acknowledged: 'IncidentAcknowledged', resolved: 'IncidentResolved' };
/** Above this many unwritten messages, or OUTBOX_HIGH_WATER_BYTES of them, producers wait
 *  (backpressure when NATS is slow or away; the durable consumer holds the events meanwhile). A
 *  crashed guest costs three messages (~1.7 KB): a burst of 5,000 fits, so analysis takes a
 *  5,000-guest burst's events as fast as they come and writes its messages after (at 2,000,
 *  intake stopped after ~700 events and waited on the writes: 1,890 events/s). */
export const OUTBOX_HIGH_WATER = 20_000;
export const OUTBOX_HIGH_WATER_BYTES = 32 * 1024 * 1024;
/** Messages being written at once (each: a stream publish and a KV put, acks awaited). Unbounded,
 *  a 5,000-incident burst put every message, its bytes and its timers in memory at once (analysis
 *  peaked near 290 MB); the rest wait as bytes in per-key lanes, no promise or closure each. */
export const OUTBOX_IN_FLIGHT = 256;

/** One message, serialised: a stream publish, and for an incident its KV record too. */
export interface Encoded {
  /** Messages of one key go out in order, each after the previous one's acks. */
  key: string;
  subject: string;
  bytes: Uint8Array;
  msgId: string;
  /** The incident's KV record: a view of `bytes` (the envelope's data), not a copy. */
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
  // one serialisation for the stream message and the KV record: the record is the envelope's
  // data, its last bytes before the closing brace (a copy of its own doubled what a burst's
  // queued incidents held)
  const json = JSON.stringify(inc);
  const subject = subjects.incident(inc.id, o.phase);
  const env = makeEnvelope(source, INCIDENT_TYPE[o.phase], inc, { causationId: o.causationId, correlationId: inc.id });
  const bytes = encodeOwn(subject, env, json);
  const end = bytes.length - 1;
  return { key: `incident:${inc.id}`, subject, bytes, msgId: env.id, kv: { key: kvKeys.incident(inc.id), bytes: bytes.subarray(end - Buffer.byteLength(json, 'utf8'), end) } };
}

/** One send(): resolved when the last of its messages is written or failed. */
interface Group {
  left: number;
  readonly n: number;
  bad: number;
  err?: string;
  readonly resolve: () => void;
}

interface Job {
  readonly m: Encoded;
  readonly size: number;
  readonly group: Group;
}

/** The messages of one key, in order; `busy` while one of them is being written. */
interface Lane {
  busy: boolean;
  readonly jobs: Job[];
}

export class Outbox {
  private readonly lanes = new Map<string, Lane>();
  /** Keys with messages waiting and none in flight, in the order they became ready. */
  private ready: string[] = [];
  private readyAt = 0;
  private readonly groups = new Set<Promise<void>>();
  private queued = 0;
  private queuedBytes = 0;
  private warned = false;
  private readonly stopping = new AbortController();
  private active = 0;
  private readonly lowWaiters: { ok: () => boolean; resolve: () => void }[] = [];
  sent = 0;
  failed = 0;

  /** `observe` sees every batch as it is queued (metrics), with the triggering event's time when known. */
  /** `gate`: closed while this replica must not act (its singleton lease is paused); writes wait. */
  constructor(private readonly bus: Bus, private readonly log: Logger, private readonly observe?: (outputs: Output[], seenAt?: number) => void, private readonly gate?: Gate) {
    // every write in flight listens on it
    setMaxListeners(0, this.stopping.signal);
  }

  /** Messages queued and not yet written (or failed). */
  get pending(): number {
    return this.queued;
  }

  /** Bytes of the messages queued and not yet written. */
  get pendingBytes(): number {
    return this.queuedBytes;
  }

  /** Above a high-water mark: producers should wait (`drained()`). */
  get full(): boolean {
    return this.queued > OUTBOX_HIGH_WATER || this.queuedBytes > OUTBOX_HIGH_WATER_BYTES;
  }

  /** Resolves once the backlog is below half of both high-water marks (producers' backpressure
   *  that keeps the pipeline full, where waiting for their own messages would write one event at
   *  a time). */
  drained(): Promise<void> {
    return this.when(() => this.queued <= OUTBOX_HIGH_WATER / 2 && this.queuedBytes <= OUTBOX_HIGH_WATER_BYTES / 2);
  }

  /** Queue one step's messages; resolves once they were written (or the failure was logged). Never rejects. */
  send(outputs: Output[], seenAt?: number): Promise<void> {
    if (!outputs.length) return Promise.resolve();
    this.observe?.(outputs, seenAt);
    this.queued += outputs.length;
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    const group: Group = { left: outputs.length, n: outputs.length, bad: 0, resolve };
    this.groups.add(done);
    void done.then(() => this.groups.delete(done));
    for (const o of outputs) {
      // serialised now, once: what waits for its turn is bytes, not objects the analyzer goes on changing
      let m: Encoded;
      try {
        m = encodeOutput(this.bus.source, o);
      } catch (e) {
        this.finish(group, 0, e as Error);
        continue;
      }
      const size = m.bytes.length; // the KV record is a view of these bytes
      this.queuedBytes += size;
      this.enqueue({ m, size, group });
    }
    // a key with nothing in flight is written at once, so one step's messages share a socket write
    this.pump();
    return done;
  }

  /** Resolves once at most `level` messages are unwritten. */
  below(level: number): Promise<void> {
    return this.when(() => this.queued <= level);
  }

  /** Queue, and wait only when too much is already waiting. */
  async offer(outputs: Output[]): Promise<void> {
    const p = this.send(outputs);
    if (!this.full) return;
    if (!this.warned) {
      this.warned = true;
      this.log.warn({ pending: this.queued, pendingBytes: this.queuedBytes, highWater: OUTBOX_HIGH_WATER, highWaterBytes: OUTBOX_HIGH_WATER_BYTES }, 'analysis outbox full (NATS slow or away): producers wait');
    }
    await p;
    await this.drained();
    if (this.warned) {
      this.warned = false;
      this.log.info({ pending: this.queued }, 'analysis outbox drained below its high-water mark');
    }
  }

  /** Stop retrying writes (shutdown): what is unwritten is re-derived from KV at the next start. */
  abandon(): void {
    this.stopping.abort();
  }

  /** Resolves when everything queued so far was written. */
  async idle(): Promise<void> {
    while (this.groups.size) await Promise.allSettled([...this.groups]);
  }

  private when(ok: () => boolean): Promise<void> {
    if (ok()) return Promise.resolve();
    return new Promise((resolve) => this.lowWaiters.push({ ok, resolve }));
  }

  private enqueue(job: Job): void {
    const key = job.m.key;
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = { busy: false, jobs: [] };
      this.lanes.set(key, lane);
    }
    lane.jobs.push(job);
    if (!lane.busy && lane.jobs.length === 1) this.ready.push(key);
  }

  /** Starts writes while fewer than OUTBOX_IN_FLIGHT are in flight: the first message of each
   *  ready key, keys in the order they became ready. */
  private pump(): void {
    while (this.active < OUTBOX_IN_FLIGHT && this.readyAt < this.ready.length) {
      const key = this.ready[this.readyAt++];
      const lane = this.lanes.get(key)!;
      const job = lane.jobs.shift()!;
      lane.busy = true;
      this.active++;
      this.write(job.m).then(() => this.written(key, lane, job), (e: unknown) => this.written(key, lane, job, e as Error));
    }
    if (this.readyAt > 1024 && this.readyAt * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.readyAt);
      this.readyAt = 0;
    }
  }

  /** The next message of this key goes after this one, whether it worked or not. */
  private written(key: string, lane: Lane, job: Job, err?: Error): void {
    this.active--;
    lane.busy = false;
    if (lane.jobs.length) this.ready.push(key);
    else this.lanes.delete(key);
    this.finish(job.group, job.size, err);
    this.pump();
  }

  private finish(group: Group, size: number, err?: Error): void {
    this.queued--;
    this.queuedBytes -= size;
    if (err) {
      group.bad++;
      group.err ??= err.message;
    }
    if (--group.left === 0) {
      this.sent += group.n - group.bad;
      this.failed += group.bad;
      if (group.bad) this.log.error({ err: group.err, messages: group.bad }, 'could not publish analysis results; a restart reconciles from KV');
      group.resolve();
    }
    if (this.lowWaiters.length) this.wake();
  }

  private wake(): void {
    for (let i = 0; i < this.lowWaiters.length; ) {
      const w = this.lowWaiters[i];
      if (!w.ok()) {
        i++;
        continue;
      }
      this.lowWaiters.splice(i, 1);
      w.resolve();
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
