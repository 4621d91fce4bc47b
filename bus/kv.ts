// Typed, validated KV access. A value that fails its schema is reported, never thrown at callers.
import type { KV } from '@nats-io/kv';
import type { z } from 'zod';

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
    const r = schema.safeParse(JSON.parse(dec.decode(e.value)));
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

/** All current values under a key prefix (`guest.`), validated; invalid ones skipped. */
export async function kvList<T>(kv: KV, prefix: string, schema: z.ZodType<T>): Promise<Map<string, T>> {
  const out = new Map<string, T>();
  const keys: string[] = [];
  const it = await kv.keys(prefix ? `${prefix}>` : '>');
  for await (const k of it) keys.push(k);
  await Promise.all(
    keys.map(async (k) => {
      const v = await kvGet(kv, k, schema);
      if (v) out.set(k, v.value);
    }),
  );
  return out;
}
