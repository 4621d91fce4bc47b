// Validates on publish and on receive. A decode never throws: it returns a reason instead,
// which the caller turns into a dead letter.
import type { z } from 'zod';
import { HomeostatError, newId, nowIso } from '../core/mod.ts';
import { familyOf } from './families.ts';
import { fastSafeParse } from './fastparse.ts';
import { Envelope } from './schemas.ts';

export const MAX_PAYLOAD_BYTES = 256 * 1024;
const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

export interface EnvelopeMeta {
  id?: string;
  correlationId?: string;
  causationId?: string;
  ts?: string;
}

export function makeEnvelope<T>(source: string, type: string, data: T, meta: EnvelopeMeta = {}): Envelope<T> {
  const now = Date.now();
  const id = meta.id ?? newId(now);
  const env: Envelope<T> = {
    id,
    ts: meta.ts ?? nowIso(now),
    source,
    type,
    correlationId: meta.correlationId ?? id,
    data,
  };
  if (meta.causationId) env.causationId = meta.causationId;
  return env;
}

export type DecodeResult<T = unknown> = { ok: true; env: Envelope<T> } | { ok: false; reason: string };

function issueText(err: z.ZodError): string {
  return err.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}

/** Validate envelope + data for `subject`; returns the parsed (defaults applied) envelope. */
export function validate<T = unknown>(subject: string, env: unknown, schema?: z.ZodType): DecodeResult<T> {
  // fastSafeParse: zod's results, precompiled for the common schemas (bus/fastparse.ts).
  const outer = fastSafeParse(Envelope, env) as z.ZodSafeParseResult<Envelope>;
  if (!outer.success) return { ok: false, reason: `envelope ${issueText(outer.error)}` };
  const fam = familyOf(subject);
  const dataSchema = schema ?? fam?.schema;
  if (!dataSchema) return { ok: false, reason: `no schema for subject ${subject}` };
  if (!schema && fam && fam.types.length && !fam.types.includes(outer.data.type)) {
    return { ok: false, reason: `type ${JSON.stringify(outer.data.type).slice(0, 90)} not allowed on ${fam.name}` };
  }
  const inner = fastSafeParse(dataSchema, outer.data.data);
  if (!inner.success) return { ok: false, reason: `data ${issueText(inner.error)}` };
  // outer.data is the parse's own fresh object: set the parsed data on it instead of copying it.
  const out = outer.data as Envelope<T>;
  out.data = inner.data as T;
  return { ok: true, env: out };
}

/** Validate (defaults applied) and serialise; returns the bytes and the envelope as sent. */
export function encodeEnvelope<T>(subject: string, env: Envelope<T>, schema?: z.ZodType): { bytes: Uint8Array; env: Envelope<T> } {
  const v = validate<T>(subject, env, schema);
  if (!v.ok) throw new HomeostatError('HOMEOSTAT_ERR_INVALID_MESSAGE', `refusing to publish on ${subject}: ${v.reason}`);
  const bytes: Uint8Array = Buffer.from(JSON.stringify(v.env), 'utf8');
  if (bytes.length > MAX_PAYLOAD_BYTES) {
    throw new HomeostatError('HOMEOSTAT_ERR_INVALID_MESSAGE', `refusing to publish on ${subject}: ${bytes.length} bytes > ${MAX_PAYLOAD_BYTES}`);
  }
  return { bytes, env: v.env };
}

/** Serialise an envelope whose data this process built itself from input it already validated,
 *  bounded by construction (the analyzer's alerts and incidents): no second zod pass, which cost a
 *  busy analysis ~10 % of its CPU. `dataJson` is the data already serialised (the same incident
 *  goes to the stream and to KV: one JSON.stringify). The size limit still holds; the tests
 *  validate what the analyzer builds against its schemas. */
export function encodeOwn(subject: string, env: Envelope, dataJson: string = JSON.stringify(env.data)): Uint8Array {
  const { data: _d, ...head } = env;
  void _d;
  const text = `${JSON.stringify(head).slice(0, -1)},"data":${dataJson}}`;
  const bytes: Uint8Array = Buffer.from(text, 'utf8');
  if (bytes.length > MAX_PAYLOAD_BYTES) {
    throw new HomeostatError('HOMEOSTAT_ERR_INVALID_MESSAGE', `refusing to publish on ${subject}: ${bytes.length} bytes > ${MAX_PAYLOAD_BYTES}`);
  }
  return bytes;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Was this envelope published by `source`, judged from its first bytes without decoding it? True
 *  only when they read exactly as this codec writes an envelope's head (`{"id":"…","ts":"…",
 *  "source":"<source>"`, no escapes in the first two values): a consumer can then pass over its own
 *  process's messages (analysis' alerts come back to its alerts durable: a decode each, ~7 % of a
 *  busy analysis' CPU). Anything else, however it is written, reads false and is decoded. */
export function sentBy(bytes: Uint8Array, source: string): boolean {
  let i = 0;
  const lit = (s: string) => {
    for (let k = 0; k < s.length; k++, i++) if (bytes[i] !== s.charCodeAt(k)) return false;
    return true;
  };
  const value = () => {
    for (; i < bytes.length && i < 256; i++) {
      if (bytes[i] === BACKSLASH) return false;
      if (bytes[i] === QUOTE) return true;
    }
    return false;
  };
  return lit('{"id":"') && value() && lit('","ts":"') && value() && lit(`","source":${JSON.stringify(source)},`);
}

export function encode(subject: string, env: Envelope, schema?: z.ZodType): Uint8Array {
  return encodeEnvelope(subject, env, schema).bytes;
}

export function decode<T = unknown>(subject: string, bytes: Uint8Array, schema?: z.ZodType): DecodeResult<T> {
  if (bytes.length > MAX_PAYLOAD_BYTES) return { ok: false, reason: `oversize payload: ${bytes.length} bytes > ${MAX_PAYLOAD_BYTES}` };
  let text: string;
  try {
    text = dec.decode(bytes);
  } catch {
    return { ok: false, reason: 'payload is not valid UTF-8' };
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return { ok: false, reason: `malformed JSON: ${(e as Error).message.slice(0, 200)}` };
  }
  return validate<T>(subject, json, schema);
}

export function encodeJson(value: unknown): Uint8Array {
  return enc.encode(JSON.stringify(value));
}
