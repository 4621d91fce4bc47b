// JetStream publishing with acks, pipelined: every publish goes out (batched per event-loop turn)
// with a reply subject under one wildcard inbox, and its promise settles when the server's ack (or
// error) comes back.
// This is what `js.publish` does, without its per-message cost: nats.js sets up a request (a
// timer, a resolver, an Error for its stack) per message, which profiling showed at about half of
// a busy publisher's CPU; here a message costs a map entry, and one sweep times out what is late.
// Nothing counts as published before its ack: callers await the promise.
import { createInbox, headers, type MsgHdrs, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import type { PubAck } from '@nats-io/jetstream';

export interface AckedPublishOptions {
  /** JetStream dedup id (Nats-Msg-Id). */
  msgId?: string;
  /** Give up waiting for the ack after this long (ms, default 5 s). */
  timeoutMs?: number;
  /** Nats-Expected-Last-Subject-Sequence (a KV update at a revision). */
  expectLastSubjectSeq?: number;
}

/** The server did not ack: no stream took the subject, it refused the message, or no ack in time. */
export class PublishRejected extends Error {
  constructor(message: string, readonly code: 'timeout' | 'no-responders' | 'refused', readonly errCode?: number) {
    super(message);
  }
}

interface Pending {
  resolve: (a: PubAck) => void;
  reject: (e: Error) => void;
  deadline: number;
  subject: string;
}

const dec = new TextDecoder();
const SWEEP_MS = 100;
/** At most this many acks outstanding, a publish with nothing batched goes out at once (the
 *  connection still coalesces what one microtask run publishes into one socket write). */
export const DIRECT_MAX = 32;

export class AckedPublisher {
  private readonly prefix: string;
  private readonly sub: Subscription;
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private sweeper?: NodeJS.Timeout;
  private batch: { id: number; subject: string; data: Uint8Array; headers?: MsgHdrs }[] = [];
  private flushing?: NodeJS.Immediate;
  private closed = false;

  constructor(private readonly nc: NatsConnection) {
    this.prefix = `${createInbox()}.`;
    this.sub = nc.subscribe(`${this.prefix}*`, { callback: (_e, m) => this.onReply(m.subject, m.data, m.headers) });
  }

  /** In flight now (acks not yet back). */
  get inFlight(): number {
    return this.pending.size;
  }

  publish(subject: string, data: Uint8Array, opts: AckedPublishOptions = {}): Promise<PubAck> {
    if (this.closed || this.nc.isClosed()) return Promise.reject(new PublishRejected(`publish to ${subject}: connection closed`, 'refused'));
    const id = ++this.seq;
    let h: MsgHdrs | undefined;
    if (opts.msgId !== undefined || opts.expectLastSubjectSeq !== undefined) {
      h = headers();
      if (opts.msgId !== undefined) h.set('Nats-Msg-Id', opts.msgId);
      if (opts.expectLastSubjectSeq !== undefined) h.set('Nats-Expected-Last-Subject-Sequence', String(opts.expectLastSubjectSeq));
    }
    const p = new Promise<PubAck>((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadline: Date.now() + (opts.timeoutMs ?? 5000), subject });
    });
    this.sweeper ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
    if (!this.batch.length && this.pending.size <= DIRECT_MAX) {
      // nothing waiting for the next turn, and few acks outstanding (not a burst): out now
      this.send(id, subject, data, h);
      return p;
    }
    this.batch.push({ id, subject, data, headers: h });
    this.flushing ??= setImmediate(() => this.flush());
    return p;
  }

  /** Hands what was published since the last turn of the event loop to the connection at once, so
   *  it leaves in one socket write: published one by one from promise continuations (an ack
   *  letting the next write go), each went out in a write of its own (writeBuffer was the busiest
   *  analysis' top self time). Costs one event-loop turn of latency, so only under load (more
   *  than DIRECT_MAX acks outstanding): a turn of a busy analysis took up to ~50 ms in the
   *  pipeline bench's waves (p90 of an incident's wait for its flush), most of the wave latency. */
  private flush(): void {
    this.flushing = undefined;
    const batch = this.batch;
    this.batch = [];
    for (const b of batch) {
      if (!this.pending.has(b.id)) continue; // timed out or closed meanwhile
      this.send(b.id, b.subject, b.data, b.headers);
    }
  }

  private send(id: number, subject: string, data: Uint8Array, headers?: MsgHdrs): void {
    try {
      this.nc.publish(subject, data, { reply: this.prefix + id, headers });
    } catch (e) {
      this.settle(id)?.reject(e as Error);
    }
  }

  /** Reject what is still waiting and stop listening. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sub.unsubscribe();
    clearInterval(this.sweeper);
    if (this.flushing) clearImmediate(this.flushing);
    this.flushing = undefined;
    this.batch = [];
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      p.reject(new PublishRejected(`publish to ${p.subject}: publisher closed before the ack`, 'refused'));
    }
  }

  private settle(id: number): Pending | undefined {
    const p = this.pending.get(id);
    this.pending.delete(id);
    if (!this.pending.size && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
    return p;
  }

  private onReply(subject: string, data: Uint8Array, h?: MsgHdrs): void {
    const p = this.settle(Number(subject.slice(this.prefix.length)));
    if (!p) return; // late: already timed out
    if (h?.code === 503) return p.reject(new PublishRejected(`publish to ${p.subject}: no stream answers (no responders)`, 'no-responders'));
    let r: { stream?: string; seq?: number; duplicate?: boolean; domain?: string; error?: { code?: number; err_code?: number; description?: string } };
    try {
      r = JSON.parse(dec.decode(data)) as typeof r;
    } catch {
      return p.reject(new PublishRejected(`publish to ${p.subject}: unreadable ack`, 'refused'));
    }
    if (r.error || !r.stream) return p.reject(new PublishRejected(`publish to ${p.subject}: ${r.error?.description ?? 'invalid ack'}`, 'refused', r.error?.err_code));
    p.resolve({ stream: r.stream, seq: r.seq ?? 0, duplicate: r.duplicate ?? false, domain: r.domain ?? '' });
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, p] of this.pending) {
      if (p.deadline > now) continue;
      this.settle(id);
      p.reject(new PublishRejected(`publish to ${p.subject}: no ack within the timeout`, 'timeout'));
    }
  }
}
