// The one object agents use to talk: validated publish/subscribe, durable consumers with DLQ,
// request/reply with timeouts, and the KV buckets.
import type { NatsConnection, Msg, Subscription } from '@nats-io/transport-node';
import { jetstream, AckPolicy, DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg, type PubAck } from '@nats-io/jetstream';
import type { z } from 'zod';
import { decode, encode, encodeEnvelope, encodeJson, makeEnvelope, validate, type EnvelopeMeta } from './codec.ts';
import { connectNats } from './connection.ts';
import { AckedPublisher } from './publisher.ts';
import type { KV } from '@nats-io/kv';
import { backoffMs, HomeostatError, retry, settlesWithin, silentLogger, sleep, type Logger } from '../core/mod.ts';
import { deadLetterId, ensureConsumer, isNatsUnavailable, PULL_EXPIRES_MS, terminate, TRANSIENT_RETRY_MS, watchMaxDeliveries } from './consumers.ts';
import { deadLetterKind, familyOf } from './families.ts';
import { AUDIT_STREAM, ensureJetStream, FLEET_STREAM, type FleetKv } from './jetstream.ts';
import { CommandReply, type Envelope } from './schemas.ts';
import { coveredByFleetStream, patternWithin, subjects, AUDIT_STREAM_SUBJECTS } from './subjects.ts';

export interface BusOptions {
  servers: string;
  /** Who publishes: becomes the envelope's `source` and the connection name. */
  source: string;
  log?: Logger;
  /** How long the first connection may take (ms, default 10 s). */
  connectTimeoutMs?: number;
  /** This process's identity (nkey seed) when the server has authentication on. */
  seed?: string;
  /** CA bundle (PEM file) for tls:// servers. */
  caFile?: string;
  /** Create or update the streams and buckets to this version's config (`up`, `init`); other
   *  clients only open them (and create them when missing and allowed to). */
  manage?: boolean;
  /** Told about every dead letter (family name, reason kind): the process's metrics count them. */
  onDeadLetter?: (family: string, reason: string) => void;
}

export interface PublishOptions extends EnvelopeMeta {
  /** JetStream dedup id; defaults to the envelope id. */
  msgId?: string;
  /** Give up a persisted publish after this long (ms). Default: keep trying across reconnects
   *  until it is stored or the bus stops: an outage of any length loses nothing. */
  retryForMs?: number;
  /** Stop retrying when this aborts (an agent shutting down during an outage). */
  signal?: AbortSignal;
}

export type Handler<T> = (env: Envelope<T>, subject: string) => void | Promise<void>;

export interface Stoppable {
  stop(): Promise<void>;
}

export interface ConsumeOptions<T> {
  durable: string;
  filter: string;
  handler: (env: Envelope<T>, msg: JsMsg) => Promise<void>;
  /** Start with messages published after the consumer was first created (default) or all. */
  deliver?: 'new' | 'all';
  ackWaitMs?: number;
  maxDeliver?: number;
  schema?: z.ZodType;
  /** Handlers running at once (default 1: strictly one after the other). Above 1 the handler must
   *  keep its own per-key order (it is still called in delivery order). */
  concurrency?: number;
  /** Already handled by other means (a core fast path, by its Nats-Msg-Id): ack it without decoding. */
  skip?: (m: JsMsg) => boolean;
}

/** What one part of a stop (consumers, then the drain) may take before the bus moves on. */
const STOP_PART_MS = 3000;

const RAW_LIMIT = 4096;

export class Bus {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly kv: FleetKv;
  readonly source: string;
  readonly log: Logger;
  /** Pipelined JetStream publishing with acks (events, KV puts on the hot paths). */
  readonly publisher: AckedPublisher;
  private readonly stoppables = new Set<Stoppable>();
  private readonly dlqSeen = new Set<string>();
  dlqCount = 0;
  /** Invalid stored messages a core subscription skipped (their durables dead-letter them). */
  skippedInvalid = 0;
  /** The durables consumed on this connection and how many messages each acked (the agent's
   *  progress counters, in its heartbeat). */
  readonly durables = new Map<string, { stream: string; acked: number }>();
  private stopping = false;
  private retriesInterrupted = false;
  private connected = true;
  private onDeadLetter?: (family: string, reason: string) => void;

  private constructor(nc: NatsConnection, jsm: JetStreamManager, kv: FleetKv, source: string, log: Logger) {
    this.nc = nc;
    this.jsm = jsm;
    this.js = jetstream(nc, { timeout: 5000 });
    this.kv = kv;
    this.source = source;
    this.log = log;
    this.publisher = new AckedPublisher(nc);
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') this.connected = false;
        else if (s.type === 'reconnect') this.connected = true;
      }
    })().catch(() => undefined);
  }

  /** Whether the connection is up now (false from a disconnect until the next reconnect). */
  get online(): boolean {
    return this.connected && !this.nc.isClosed();
  }

  static async connect(opts: BusOptions): Promise<Bus> {
    const log = opts.log ?? silentLogger;
    const nc = await connectNats({ servers: opts.servers, name: `homeostat-${opts.source}`, log, firstConnectTimeoutMs: opts.connectTimeoutMs, seed: opts.seed, caFile: opts.caFile });
    try {
      const { jsm, kv } = await ensureJetStream(nc, { manage: opts.manage ?? false });
      const bus = new Bus(nc, jsm, kv, opts.source, log);
      bus.onDeadLetter = opts.onDeadLetter;
      return bus;
    } catch (e) {
      await nc.close().catch(() => undefined);
      if (e instanceof HomeostatError) throw e;
      throw new HomeostatError('HOMEOSTAT_ERR_NATS_UNAVAILABLE', `JetStream not available at ${opts.servers}: ${(e as Error).message}`, { cause: e });
    }
  }

  envelope<T>(type: string, data: T, meta: EnvelopeMeta = {}): Envelope<T> {
    return makeEnvelope(this.source, type, data, meta);
  }

  /** Validate and publish. Persisted subjects go through JetStream (dedup on msgId) and are
   *  retried across reconnects; others are core NATS. Returns the envelope sent. */
  async publish<T>(subject: string, type: string, data: T, opts: PublishOptions = {}): Promise<Envelope<T>> {
    const { bytes, env: parsed } = encodeEnvelope(subject, this.envelope(type, data, opts));
    if (!coveredByFleetStream(subject)) {
      this.nc.publish(subject, bytes);
      return parsed;
    }
    await this.persist(subject, bytes, opts.msgId ?? parsed.id, opts.retryForMs ?? Number.POSITIVE_INFINITY, opts.signal);
    return parsed;
  }

  /** Publish bytes already encoded (encodeOwn) to a stored subject: retried like `publish`. */
  async publishEncoded(subject: string, bytes: Uint8Array, msgId: string, opts: Pick<PublishOptions, 'retryForMs' | 'signal'> = {}): Promise<PubAck> {
    return this.persist(subject, bytes, msgId, opts.retryForMs ?? Number.POSITIVE_INFINITY, opts.signal);
  }

  private async persist(subject: string, bytes: Uint8Array, msgId: string, retryForMs: number, signal?: AbortSignal): Promise<PubAck> {
    const deadline = Date.now() + retryForMs;
    const attempt = () => this.publisher.publish(subject, bytes, { msgId, timeoutMs: 3000 });
    const retryable = () => !this.stopping && !this.retriesInterrupted && !this.nc.isClosed() && Date.now() <= deadline;
    const failed = (e: unknown) => new HomeostatError('HOMEOSTAT_ERR_NATS_UNAVAILABLE', `publish to ${subject} failed: ${(e as Error).message}`, { cause: e });
    // the common case, stored at the first attempt, without the retry loop's promises and timers
    try {
      return await attempt();
    } catch (e) {
      if (signal?.aborted || !retryable()) throw failed(e);
    }
    const backoff = { baseMs: 50, maxMs: 2000 };
    try {
      await sleep(backoffMs(1, backoff), signal);
      return await retry(attempt, { ...backoff, retryable, signal });
    } catch (e) {
      throw failed(e);
    }
  }

  /** A KV put (last-value write) through the pipelined publisher: many may be in flight at once.
   *  Resolves with the new revision once the server acked it. */
  async kvPut(kv: KV, key: string, value: unknown): Promise<number> {
    return this.kvPutBytes(kv, key, Buffer.from(JSON.stringify(value), 'utf8'));
  }

  /** `kvPut` of a value already serialised (JSON). */
  async kvPutBytes(kv: KV, key: string, bytes: Uint8Array): Promise<number> {
    // the Bucket behind every KV handle knows its edit subject (API prefix, mirrors)
    const subject = (kv as unknown as { subjectForKey(k: string, edit: boolean): string }).subjectForKey(key, true);
    const ack = await this.publisher.publish(subject, bytes, { timeoutMs: 5000 });
    return ack.seq;
  }

  /** Calls `fn` after every reconnect to NATS (level-triggered agents re-send or re-read their
   *  state then: whatever happened during the outage may have been missed). */
  onReconnect(fn: () => void): Stoppable {
    let stopped = false;
    void (async () => {
      for await (const s of this.nc.status()) {
        if (stopped) break;
        if (s.type === 'reconnect') fn();
      }
    })().catch(() => undefined);
    return this.track({ stop: async () => void (stopped = true) });
  }

  /** Publish an envelope that already exists (e.g. forwarding); still validated. */
  async publishCore<T>(subject: string, type: string, data: T, meta: EnvelopeMeta = {}): Promise<Envelope<T>> {
    const env = this.envelope(type, data, meta);
    this.nc.publish(subject, encode(subject, env));
    return env;
  }

  /** Send an invalid message to fleet.dlq.<subject>: counted, logged once per subject+reason kind.
   *  `id` (see deadLetterId) makes it one letter per bad message per consumer, however often the
   *  message is seen; without it every call is a new letter. */
  async deadLetter(subject: string, raw: Uint8Array, reason: string, opts: { id?: string } = {}): Promise<void> {
    if (subject.startsWith('fleet.dlq.')) return; // never dead-letter a dead letter
    const text = Buffer.from(raw.subarray(0, RAW_LIMIT)).toString('utf8');
    const data = {
      subject,
      reason: reason.slice(0, 2000),
      raw: text.slice(0, RAW_LIMIT),
      size: raw.length,
      truncated: raw.length > RAW_LIMIT,
      receivedBy: this.source,
    };
    try {
      const { bytes, env } = encodeEnvelope(subjects.dlq(subject), this.envelope('DeadLetter', data));
      const ack = await this.persist(subjects.dlq(subject), bytes, opts.id ?? env.id, Number.POSITIVE_INFINITY);
      if (ack.duplicate) return;
    } catch (e) {
      this.log.error({ subject, err: (e as Error).message }, 'could not publish dead letter');
    }
    this.dlqCount++;
    this.onDeadLetter?.(familyOf(subject)?.name ?? 'unknown', deadLetterKind(reason));
    const kind = `${subject.split('.').slice(0, 3).join('.')}|${reason.split(':')[0]}`;
    if (!this.dlqSeen.has(kind)) {
      this.dlqSeen.add(kind);
      this.log.warn({ subject, reason, dlqCount: this.dlqCount }, 'invalid message sent to dead-letter subject');
    }
  }

  /** A stored message a core subscriber could not decode: counted, logged once per subject family. */
  private skipInvalid(subject: string, reason: string): void {
    this.skippedInvalid++;
    const kind = `skip|${subject.split('.').slice(0, 3).join('.')}`;
    if (this.dlqSeen.has(kind)) return;
    this.dlqSeen.add(kind);
    this.log.warn({ subject, reason, skipped: this.skippedInvalid }, 'invalid message skipped by a core subscriber (its durable consumers dead-letter it)');
  }

  /** Dead-letter the stored message a durable gave up on (its max-deliveries advisory). */
  async deadLetterStored(stream: string, durable: string, streamSeq: number, reason: string): Promise<void> {
    const m = await this.jsm.streams.getMessage(stream, { seq: streamSeq }).catch(() => null);
    if (!m) return; // aged out or purged: nothing left to keep
    await this.deadLetter(m.subject, m.data, reason, { id: deadLetterId(durable, streamSeq) });
  }

  /** Durable config on the server matches ours, and its max-deliveries advisory is handled. */
  async ensureDurable(stream: string, cfg: Parameters<typeof ensureConsumer>[2]): Promise<Stoppable> {
    await ensureConsumer(this.jsm, stream, cfg, this.log);
    const durable = cfg.durable_name;
    this.durables.set(durable, { stream, acked: this.durables.get(durable)?.acked ?? 0 });
    const watch = watchMaxDeliveries(this.nc, stream, durable, (x) =>
      this.deadLetterStored(stream, durable, x.streamSeq, `not acknowledged after ${x.deliveries} deliveries to ${durable} (handler hung or its process died)`), this.log);
    return this.track({ stop: async () => watch.stop() });
  }

  /** One more message of `durable` handled (for consumers that ack on their own). */
  noteAck(durable: string): void {
    const d = this.durables.get(durable);
    if (d) d.acked++;
  }

  /** The message could not be decoded: one dead letter for this consumer, and the server drops it. */
  async rejectPoison(durable: string, m: JsMsg, reason: string): Promise<void> {
    await this.deadLetter(m.subject, m.data, reason, { id: deadLetterId(durable, m.seq) });
    terminate(m);
  }

  /** Core subscription with validation; the loop goes on past bad messages. A bad message on a
   *  subject that is not stored goes to the DLQ (nothing else will see it); one on a stored subject
   *  is only counted (`skippedInvalid`): the durable consumers of that subject dead-letter it, one
   *  letter per consumer, and a core subscriber has no stable id to add a letter of its own. */
  subscribe<T>(pattern: string, handler: Handler<T>, opts: { queue?: string; schema?: z.ZodType } = {}): Stoppable {
    const sub: Subscription = this.nc.subscribe(pattern, { queue: opts.queue });
    const done = (async () => {
      for await (const m of sub) {
        const r = decode<T>(m.subject, m.data, opts.schema);
        if (!r.ok) {
          if (coveredByFleetStream(m.subject)) this.skipInvalid(m.subject, r.reason);
          else await this.deadLetter(m.subject, m.data, r.reason);
          continue;
        }
        try {
          await handler(r.env, m.subject);
        } catch (e) {
          this.log.error({ subject: m.subject, err: (e as Error).message }, 'handler failed');
        }
      }
    })();
    return this.track({
      stop: async () => {
        sub.unsubscribe();
        await done.catch(() => undefined);
      },
    });
  }

  /** Durable JetStream consumer with explicit ack. Invalid → DLQ + term; handler error →
   *  nak with backoff, dead-lettered after maxDeliver attempts. */
  async consume<T>(opts: ConsumeOptions<T>): Promise<Stoppable> {
    const stream = AUDIT_STREAM_SUBJECTS.some((s) => patternWithin(opts.filter, s)) ? AUDIT_STREAM : FLEET_STREAM;
    const maxDeliver = opts.maxDeliver ?? 5;
    const cfg = {
      durable_name: opts.durable,
      ack_policy: AckPolicy.Explicit,
      filter_subject: opts.filter,
      deliver_policy: opts.deliver === 'all' ? DeliverPolicy.All : DeliverPolicy.New,
      ack_wait: (opts.ackWaitMs ?? 30_000) * 1_000_000,
      max_deliver: maxDeliver,
    };
    const advisory = await this.ensureDurable(stream, cfg);
    const consumer = await this.js.consumers.get(stream, opts.durable);
    const messages = await consumer.consume({ max_messages: 64, expires: PULL_EXPIRES_MS });
    // Acks of one event-loop turn leave together: acked one by one from the loop below, each went
    // out in a socket write of its own (a third of a busy analysis' writes under a burst). An ack
    // held back one turn changes nothing: the message is handled, and a crash before the ack
    // leaves is a redelivery, as a crash just before `ack()` always was.
    let acks: JsMsg[] = [];
    let acking: NodeJS.Immediate | undefined;
    const flushAcks = () => {
      acking = undefined;
      const batch = acks;
      acks = [];
      for (const m of batch) m.ack();
    };
    const ack = (m: JsMsg) => {
      acks.push(m);
      acking ??= setImmediate(flushAcks);
    };
    let closed = false;
    const handle = async (m: JsMsg, env: Envelope<T>) => {
      // A handler that failed because NATS itself could not answer (a cluster electing a leader:
      // "JetStream system temporarily unavailable", timeouts, no responders) is retried here, on
      // the same delivery, for up to TRANSIENT_RETRY_MS: naked, it burnt its max_deliver tries in
      // ~6 s and a 20 s election dead-lettered good incidents (bench/scale, fleet-state's leader
      // killed: those crashes never healed). The message is kept ours meanwhile (`working`).
      for (let tries = 1, since = Date.now(); ; tries++) {
        try {
          await opts.handler(env, m);
          ack(m);
          this.noteAck(opts.durable);
          return;
        } catch (e) {
          if (closed || this.stopping || !isNatsUnavailable(e) || Date.now() - since >= TRANSIENT_RETRY_MS) {
            await this.handlerFailed(opts.durable, m, maxDeliver, e);
            return;
          }
          if (tries === 1) this.log.warn({ subject: m.subject, err: (e as Error).message }, 'handler failed while NATS is unavailable; retrying it on this delivery');
          m.working();
          await sleep(backoffMs(tries, { baseMs: 250, maxMs: 3000 }));
        }
      }
    };
    const limit = Math.max(1, opts.concurrency ?? 1);
    const running = new Set<Promise<void>>();
    const done = (async () => {
      for await (const m of messages) {
        if (opts.skip?.(m)) {
          ack(m);
          this.noteAck(opts.durable);
          continue;
        }
        const r = decode<T>(m.subject, m.data, opts.schema);
        if (!r.ok) {
          await this.rejectPoison(opts.durable, m, r.reason);
          continue;
        }
        if (limit === 1) {
          await handle(m, r.env);
          continue;
        }
        const p: Promise<void> = handle(m, r.env).finally(() => running.delete(p));
        running.add(p);
        if (running.size >= limit) await Promise.race(running);
      }
      await Promise.allSettled(running);
    })();
    return this.track({
      stop: async () => {
        closed = true;
        await advisory.stop();
        await messages.close().catch(() => undefined);
        await done.catch(() => undefined);
        if (acking) clearImmediate(acking);
        flushAcks();
      },
    });
  }

  /** A handler failed for good on this delivery: nak with backoff, or after max_deliver
   *  deliveries one dead letter and a terminate. */
  private async handlerFailed(durable: string, m: JsMsg, maxDeliver: number, e: unknown): Promise<void> {
    const attempt = m.info.deliveryCount;
    if (attempt >= maxDeliver) {
      await this.deadLetter(m.subject, m.data, `handler failed ${attempt} times: ${(e as Error).message}`, { id: deadLetterId(durable, m.seq) });
      terminate(m);
    } else {
      this.log.warn({ subject: m.subject, attempt, err: (e as Error).message }, 'handler failed, will retry');
      m.nak(backoffMs(attempt, { baseMs: 400, maxMs: 10_000 }));
    }
  }

  /** Request/reply over fleet.cmd.* and fleet.chat. Throws HomeostatError on timeout, no responders, or an error reply. */
  async request<R = unknown>(subject: string, type: string, data: unknown, timeoutMs = 10_000): Promise<R> {
    const env = this.envelope(type, data);
    let msg: Msg;
    try {
      msg = await this.nc.request(subject, encode(subject, env), { timeout: timeoutMs });
    } catch (e) {
      const err = e as Error & { isNoResponders?: () => boolean };
      if (typeof err.isNoResponders === 'function' && err.isNoResponders()) {
        throw new HomeostatError('HOMEOSTAT_ERR_TIMEOUT', `no agent answers ${subject}; is \`homeostat up\` running?`, { cause: e });
      }
      throw new HomeostatError('HOMEOSTAT_ERR_TIMEOUT', `no reply on ${subject} within ${timeoutMs} ms`, { cause: e });
    }
    const r = decode<CommandReply>(subject, msg.data, CommandReply);
    if (!r.ok) throw new HomeostatError('HOMEOSTAT_ERR_INVALID_MESSAGE', `bad reply on ${subject}: ${r.reason}`);
    if (!r.env.data.ok) {
      const code = (r.env.data.error?.code ?? 'HOMEOSTAT_ERR_INTERNAL') as HomeostatError['code'];
      throw new HomeostatError(code, r.env.data.error?.message ?? 'request failed');
    }
    return r.env.data.result as R;
  }

  /** Serve a request subject; the handler's value becomes `{ok:true,result}`, a throw becomes `{ok:false,error}`. */
  serve<T>(pattern: string, handler: (env: Envelope<T>, subject: string) => Promise<unknown>, opts: { queue?: string; schema?: z.ZodType } = {}): Stoppable {
    const sub = this.nc.subscribe(pattern, { queue: opts.queue ?? 'homeostat' });
    const respond = (m: Msg, reply: CommandReply, causationId?: string, correlationId?: string) => {
      if (!m.reply) return;
      const env = this.envelope('CommandReply', reply, { causationId, correlationId });
      const v = validate(m.subject, env, CommandReply);
      m.respond(encodeJson(v.ok ? v.env : { ...env, data: { ok: false, error: { code: 'HOMEOSTAT_ERR_INTERNAL', message: 'reply failed validation' } } }));
    };
    const done = (async () => {
      for await (const m of sub) {
        const r = decode<T>(m.subject, m.data, opts.schema);
        if (!r.ok) {
          respond(m, { ok: false, error: { code: 'HOMEOSTAT_ERR_INVALID_MESSAGE', message: r.reason } });
          await this.deadLetter(m.subject, m.data, r.reason);
          continue;
        }
        // handle concurrently: a slow command must not block status queries
        void (async () => {
          try {
            const result = await handler(r.env, m.subject);
            respond(m, { ok: true, result }, r.env.id, r.env.correlationId);
          } catch (e) {
            const code = e instanceof HomeostatError ? e.code : 'HOMEOSTAT_ERR_INTERNAL';
            respond(m, { ok: false, error: { code, message: (e as Error).message.slice(0, 2000) } }, r.env.id, r.env.correlationId);
          }
        })();
      }
    })();
    return this.track({
      stop: async () => {
        sub.unsubscribe();
        await done.catch(() => undefined);
      },
    });
  }

  private track(s: Stoppable): Stoppable {
    this.stoppables.add(s);
    return {
      stop: async () => {
        this.stoppables.delete(s);
        await s.stop();
      },
    };
  }

  /** The process is shutting down: a persisted publish that fails from now on gives up instead
   *  of waiting for NATS (redelivery and the reconcile at the next start cover it). Call before
   *  stopping the agents on this bus, so a stop during an outage does not hang. */
  interruptRetries(): void {
    this.retriesInterrupted = true;
  }

  /** Close the connection at once, without draining (shutting down while NATS is unreachable:
   *  nothing can be flushed, and whatever still waits on NATS fails now instead of retrying). */
  async abort(): Promise<void> {
    this.retriesInterrupted = true;
    await this.nc.close().catch(() => undefined);
  }

  /** Stop subscriptions and consumers, then drain the connection. With NATS unreachable the
   *  connection is closed first (a drain would wait for a reconnect that may never come); and
   *  each part gets a deadline (STOP_PART_MS), after which the connection is closed instead. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (!this.online) await this.abort();
    await settlesWithin(Promise.allSettled([...this.stoppables].map((s) => s.stop())), STOP_PART_MS);
    this.stoppables.clear();
    if (!this.nc.isClosed() && !(await settlesWithin(this.nc.drain(), STOP_PART_MS).catch(() => false))) await this.nc.close().catch(() => undefined);
    this.publisher.close();
  }
}
