// Typed, validated KV access. A value that fails its schema is reported, never thrown at callers.
import type { KV } from '@nats-io/kv';
import type { z } from 'zod';
import { fastSafeParse } from './fastparse.ts';

export interface Versioned<T> {
  value: T;
  revision: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export async function kvGet<T>(kv: KV, key: string, schema: z.ZodType<T>): Promise<Versioned<T> | undefined> {
  const e = await kv.get(key);
  if (!e || e.operation !== 'PUT' || e.value.length === 0) return undefined;
  try {
    const r = fastSafeParse(schema, JSON.parse(dec.decode(e.value))) as z.ZodSafeParseResult<T>;
    return r.success ? { value: r.data, revision: e.revision } : undefined;
  } catch {
    return undefined;
  }
}

export async function kvPut<T>(kv: KV, key: string, value: T): Promise<number> {
  return kv.put(key, enc.encode(JSON.stringify(value)));
}

/** Compare-and-set: create when revision is 0, else update at that revision. Returns the new revision or undefined on conflict. */
export async function kvCas<T>(kv: KV, key: string, value: T, revision: number): Promise<number | undefined> {
  try {
    return revision === 0 ? await kv.create(key, enc.encode(JSON.stringify(value))) : await kv.update(key, enc.encode(JSON.stringify(value)), revision);
  } catch {
    return undefined;
  }
}

/** How long the creation of a listing's or watch's ordered consumer may take before it is tried
 *  again (1 s, half a second more each time, at most 4 s: a loaded host's creations can take
 *  longer than the first), and how often. nats-server 2.9 (Debian's) places an R1 ephemeral consumer on any peer
 *  of the stream, including one that is down: with one server of three SIGKILLed, about half of
 *  the creations then time out (5 s, the client's API timeout) for as long as it stays down
 *  (measured: every round of six listings over 3 minutes had 1–4 fail). A retry is placed again. */
export const CONSUMER_CREATE_MS = 1000;
const createMs = (attempt: number) => Math.min(CONSUMER_CREATE_MS + 500 * attempt, 4000);
const CONSUMER_CREATE_TRIES = 12;

/** `make()` (a KV watch or key listing: an ordered consumer) tried again when it does not answer
 *  in time (createMs); one that answers late is stopped at once. */
export async function orderedConsumer<T extends { stop(): void }>(make: () => Promise<T>, what: string): Promise<T> {
  let last: unknown;
  for (let i = 0; i < CONSUMER_CREATE_TRIES; i++) {
    const p = make();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), createMs(i))));
    try {
      const got = await Promise.race([p, late]);
      if (got !== undefined) return got;
      void p.then((x) => x.stop(), () => undefined);
      last = new Error(`creating ${what} did not complete within ${createMs(i)} ms`);
    } catch (e) {
      last = e;
      if (!isTimeout(e)) throw e;
    } finally {
      clearTimeout(timer);
    }
  }
  throw last instanceof Error ? last : new Error(String(last));
}

const isTimeout = (e: unknown) => e instanceof Error && (e.name === 'TimeoutError' || /timeout|timed out/i.test(e.message));

/** All current values under a key prefix (`guest.`), validated; invalid ones skipped. One ordered
 *  consumer delivers every key's last value (a watch of the prefix, ended at the last of them):
 *  a get per key, as before, cost a 5,000-guest fleet 5,000 request/replies per read (analysis
 *  reads the fleet state every 10 s; its CPU spikes held events back by up to 0.3 s). */
export async function kvList<T>(kv: KV, prefix: string, schema: z.ZodType<T>, timeoutMs = 30_000): Promise<Map<string, T>> {
  const out = new Map<string, T>();
  const key = prefix ? `${prefix}>` : '>';
  // The keys first (headers only): a watch of nothing delivers nothing, and while the prefix is
  // being written the watch may say "nothing pending" without one key's value having come by
  // (seen in test/bus-publisher: 99 of 100): those few are read one by one at the end.
  const missing = new Set<string>();
  for await (const k of await orderedConsumer(() => kv.keys(key), `a key listing of ${key}`)) missing.add(k);
  if (!missing.size) return out;
  const w = await orderedConsumer(() => kv.watch({ key }), `a watch of ${key}`);
  const timer = setTimeout(() => w.stop(), timeoutMs);
  let done = false;
  let n = 0;
  try {
    for await (const e of w) {
      missing.delete(e.key);
      if (e.operation === 'PUT' && e.value.length > 0) {
        try {
          const r = fastSafeParse(schema, JSON.parse(dec.decode(e.value))) as z.ZodSafeParseResult<T>;
          if (r.success) out.set(e.key, r.data);
          else out.delete(e.key);
        } catch {
          out.delete(e.key);
        }
      } else {
        out.delete(e.key);
      }
      // caught up: nothing more was pending when this one was sent. (Not `isUpdate`: nats.js counts
      // the initial values after the consumer has begun to deliver, so it flags one too early.)
      if (e.delta === 0) {
        done = true;
        break;
      }
      // thousands of values arrive at once: let other messages (events) in now and then, or they
      // wait for the whole read (analysis' reconcile of 5,000 guests held events ~0.3 s)
      if (++n % 256 === 0) await new Promise<void>((r) => setImmediate(r));
    }
  } finally {
    clearTimeout(timer);
    w.stop();
  }
  if (!done) throw new Error(`reading KV ${prefix || '(all)'} did not complete within ${timeoutMs} ms`);
  for (const k of missing) {
    const v = await kvGet(kv, k, schema);
    if (v) out.set(k, v.value);
  }
  return out;
}
