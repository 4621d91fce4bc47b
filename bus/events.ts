// `subscribeFleetEvents(filter)`: replay from the FLEET stream (from --since), then follow live.
// Subjects outside the stream (metrics) are followed live over core NATS.
import { DeliverPolicy } from '@nats-io/jetstream';
import type { Bus } from './bus.ts';
import { decode } from './codec.ts';
import type { Envelope } from './schemas.ts';
import { coveredByFleetStream, patternWithin, FLEET_STREAM_SUBJECTS, patterns } from './subjects.ts';
import { FLEET_STREAM } from './jetstream.ts';


export interface FleetEventFilter {
  /** NATS subject pattern, default `fleet.>` */
  subject?: string;
  /** Replay stored events from this instant, then follow. */
  since?: Date;
  /** Stop after the replay instead of following. */
  follow?: boolean;
  signal?: AbortSignal;
}

export interface FleetEvent<T = unknown> {
  subject: string;
  env: Envelope<T>;
  /** Stream sequence when it came from the FLEET stream. */
  seq?: number;
  /** Present when the stored bytes did not validate (shown, never dropped). */
  invalid?: string;
}

/** Parse `--since`: a duration (`90s`, `15m`, `1h`, `2d`) or an ISO timestamp. */
export function parseSince(value: string, now = Date.now()): Date | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim());
  if (m) {
    const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    return new Date(now - Number(m[1]) * mult);
  }
  const t = Date.parse(value);
  return Number.isNaN(t) ? undefined : new Date(t);
}

export async function* subscribeFleetEvents(bus: Bus, filter: FleetEventFilter = {}): AsyncIterable<FleetEvent> {
  const subject = filter.subject ?? patterns.all;
  const follow = filter.follow ?? true;
  const persisted = coveredByFleetStream(subject) || FLEET_STREAM_SUBJECTS.some((s) => patternWithin(s, subject));
  if (!persisted) {
    if (!follow) return;
    const sub = bus.nc.subscribe(subject);
    filter.signal?.addEventListener('abort', () => sub.unsubscribe(), { once: true });
    for await (const m of sub) {
      const r = decode(m.subject, m.data);
      yield r.ok ? { subject: m.subject, env: r.env } : { subject: m.subject, env: rawEnvelope(m.data), invalid: r.reason };
    }
    return;
  }
  const consumer = await bus.js.consumers.get(FLEET_STREAM, {
    filter_subjects: subject,
    ...(filter.since
      ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: filter.since.toISOString() }
      : { deliver_policy: DeliverPolicy.New }),
  });
  const toEvent = (m: { subject: string; data: Uint8Array; seq: number }): FleetEvent => {
    const r = decode(m.subject, m.data);
    return r.ok ? { subject: m.subject, env: r.env, seq: m.seq } : { subject: m.subject, env: rawEnvelope(m.data), seq: m.seq, invalid: r.reason };
  };
  if (!follow) {
    if (!filter.since) return;
    // Fetch in batches until the stored history is exhausted (an empty batch or nothing pending).
    for (;;) {
      const batch = await consumer.fetch({ max_messages: 256, expires: 1000 });
      let n = 0;
      let pending = 1;
      for await (const m of batch) {
        n++;
        pending = m.info.pending;
        yield toEvent(m);
      }
      if (n === 0 || pending === 0 || filter.signal?.aborted) return;
    }
  }
  const messages = await consumer.consume();
  filter.signal?.addEventListener('abort', () => void messages.close(), { once: true });
  for await (const m of messages) yield toEvent(m);
  await messages.close();
}

/** Every stored message matching `subject` from `since` on, then stop. */
export async function replayStored(bus: Bus, subject: string, since: Date, limit = 200_000): Promise<FleetEvent[]> {
  const out: FleetEvent[] = [];
  for await (const ev of subscribeFleetEvents(bus, { subject, since, follow: false })) {
    out.push(ev);
    if (out.length >= limit) break;
  }
  return out;
}

function rawEnvelope(data: Uint8Array): Envelope {
  return {
    id: '-',
    ts: new Date().toISOString(),
    source: '?',
    type: 'Invalid',
    correlationId: '-',
    data: Buffer.from(data.subarray(0, 500)).toString('utf8'),
  };
}
