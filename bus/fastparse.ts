// A precompiled fast path for the zod schemas of the wire contract (bench/bus profile: zod's
// interpreted checks, payload/issue objects and the envelope spread were most of the codec's time).
// `compileFast(schema)` turns the plain parts of zod (objects that strip unknown keys, strings with
// length/pattern checks, finite numbers with bounds and int, booleans, enums, literals, optional,
// nullable, arrays, unknown) into one closure. It only ever says "valid, and here is exactly what
// zod would return" or "not sure": on "not sure" the caller runs zod itself, so rejections, their
// messages and every schema feature it does not know (defaults, unions, refinements, transforms)
// stay zod's. It never accepts what zod rejects; test/bus-fastparse.test.ts holds it to that.
// (A check's `when` guard is ignored on purpose: running a check zod might skip can only make
// the fast path stricter, which sends the value to zod.)
import type { z } from 'zod';

export const FAIL: unique symbol = Symbol('fastparse.fail');
export type Fast = (v: unknown) => unknown;

interface Internals {
  def: Record<string, unknown> & { type: string; checks?: { _zod: { def: Record<string, unknown> } }[] };
  optin?: string;
  optout?: string;
  values?: Set<unknown>;
}
const internals = (s: unknown): Internals => (s as { _zod: Internals })._zod;

/** String formats whose zod check is exactly "the pattern matches". */
const PATTERN_FORMATS = new Set(['datetime', 'date', 'time', 'regex', 'uuid', 'ulid']);

type Pred<T> = (v: T) => boolean;

/** zod's length checks (strings and arrays), or undefined for any other check. */
function lengthCheck(d: Record<string, unknown>): Pred<{ length: number }> | undefined {
  if (d.check === 'min_length') {
    const min = d.minimum as number;
    return (v) => v.length >= min;
  }
  if (d.check === 'max_length') {
    const max = d.maximum as number;
    return (v) => v.length <= max;
  }
  if (d.check === 'length_equals') {
    const len = d.length as number;
    return (v) => v.length === len;
  }
  return undefined;
}

function stringChecks(checks: Internals['def']['checks']): Pred<string> | null {
  const preds: Pred<string>[] = [];
  for (const c of checks ?? []) {
    const d = c._zod.def;
    const len = lengthCheck(d);
    if (len) preds.push(len);
    else if (d.check === 'string_format' && PATTERN_FORMATS.has(d.format as string) && d.pattern instanceof RegExp) {
      const re = d.pattern;
      preds.push((v) => {
        re.lastIndex = 0;
        return re.test(v);
      });
    } else return null;
  }
  return all(preds);
}

function numberChecks(checks: Internals['def']['checks']): Pred<number> | null {
  const preds: Pred<number>[] = [];
  for (const c of checks ?? []) {
    const d = c._zod.def;
    if (d.check === 'greater_than') {
      const x = d.value as number;
      preds.push(d.inclusive ? (v) => v >= x : (v) => v > x);
    } else if (d.check === 'less_than') {
      const x = d.value as number;
      preds.push(d.inclusive ? (v) => v <= x : (v) => v < x);
    } else if (d.check === 'number_format' && d.format === 'safeint') {
      preds.push(Number.isSafeInteger);
    } else return null;
  }
  return all(preds);
}

function all<T>(preds: Pred<T>[]): Pred<T> {
  if (preds.length === 0) return () => true;
  if (preds.length === 1) return preds[0];
  if (preds.length === 2) {
    const [a, b] = preds;
    return (v) => a(v) && b(v);
  }
  return (v) => {
    for (const p of preds) if (!p(v)) return false;
    return true;
  };
}

/** The closure for `schema`, or null when it uses anything this file does not mirror exactly. */
export function compileFast(schema: z.ZodType): Fast | null {
  const zi = internals(schema);
  const def = zi.def;
  switch (def.type) {
    case 'string': {
      if (def.coerce) return null;
      const ok = stringChecks(def.checks);
      if (!ok) return null;
      return (v) => (typeof v === 'string' && ok(v) ? v : FAIL);
    }
    case 'number': {
      if (def.coerce) return null;
      const ok = numberChecks(def.checks);
      if (!ok) return null;
      return (v) => (typeof v === 'number' && Number.isFinite(v) && ok(v) ? v : FAIL);
    }
    case 'boolean':
      if (def.coerce || def.checks?.length) return null;
      return (v) => (typeof v === 'boolean' ? v : FAIL);
    case 'enum':
    case 'literal': {
      const values = zi.values;
      if (!values || def.checks?.length) return null;
      return (v) => (values.has(v) ? v : FAIL);
    }
    case 'unknown':
    case 'any':
      if (def.checks?.length) return null;
      return (v) => v;
    case 'optional': {
      if (def.checks?.length || zi.optin !== 'optional') return null;
      const inner = compileFast(def.innerType as z.ZodType);
      if (!inner) return null;
      return (v) => (v === undefined ? undefined : inner(v));
    }
    case 'nullable': {
      if (def.checks?.length) return null;
      const inner = compileFast(def.innerType as z.ZodType);
      if (!inner) return null;
      return (v) => (v === null ? null : inner(v));
    }
    case 'array': {
      const inner = compileFast(def.element as z.ZodType);
      if (!inner) return null;
      const ok = arrayChecks(def.checks);
      if (!ok) return null;
      return (v) => {
        if (!Array.isArray(v) || !ok(v)) return FAIL;
        const out = new Array<unknown>(v.length);
        for (let i = 0; i < v.length; i++) {
          const r = inner(v[i]);
          if (r === FAIL) return FAIL;
          out[i] = r;
        }
        return out;
      };
    }
    case 'object':
      return compileObject(schema);
    default:
      return null;
  }
}

function arrayChecks(checks: Internals['def']['checks']): Pred<unknown[]> | null {
  const preds: Pred<unknown[]>[] = [];
  for (const c of checks ?? []) {
    const len = lengthCheck(c._zod.def);
    if (!len) return null;
    preds.push(len);
  }
  return all(preds);
}

interface Field {
  key: string;
  parse: Fast;
  /** optional in and out: an absent key is fine and stays absent */
  optional: boolean;
}

function compileObject(schema: z.ZodType): Fast | null {
  const def = internals(schema).def;
  // Only zod's default "strip" objects: a catchall (passthrough, strict, catchall) or a refinement
  // on the object goes to zod.
  if (def.catchall !== undefined || def.checks?.length) return null;
  const shape = def.shape as Record<string, z.ZodType>;
  if (Object.getOwnPropertySymbols(shape).length) return null;
  const fields: Field[] = [];
  for (const key of Object.keys(shape)) {
    if (key === '__proto__') return null;
    const s = internals(shape[key]);
    if (s.optin !== undefined && !(s.optin === 'optional' && s.optout === 'optional')) return null;
    if (s.optin === undefined && s.optout !== undefined) return null;
    const parse = compileFast(shape[key]);
    if (!parse) return null;
    fields.push({ key, parse, optional: s.optin === 'optional' });
  }
  return (v) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return FAIL;
    const input = v as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const f of fields) {
      const present = f.key in input;
      if (!present) {
        if (f.optional) continue;
        return FAIL;
      }
      const r = f.parse(input[f.key]);
      if (r === FAIL) return FAIL;
      out[f.key] = r;
    }
    return out;
  };
}

const compiled = new WeakMap<object, Fast | null>();

/** zod's `safeParse` with the fast path in front; same results. */
export function fastSafeParse(schema: z.ZodType, value: unknown): { success: true; data: unknown } | { success: false; error: z.ZodError } {
  let fast = compiled.get(schema);
  if (fast === undefined) {
    fast = compileFast(schema);
    compiled.set(schema, fast);
  }
  if (fast) {
    const r = fast(value);
    if (r !== FAIL) return { success: true, data: r };
  }
  return schema.safeParse(value);
}
