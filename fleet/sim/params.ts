// Parameter verification the way PVE's JSONSchema.pm does it, with its messages: every value
// arrives as a string (query or form body), is type-checked, then enum / range / length / pattern
// / format are checked, unknown names are refused when `additionalProperties` is 0, and every
// property without `optional` must be present.
import type { JsonSchema } from './schema.ts';

export type RawParams = Record<string, string>;
export type ParamValues = Record<string, string | number | boolean>;
export type ParamResult = { ok: true; values: ParamValues } | { ok: false; errors: Record<string, string> };

const INTEGER = /^[+-]?\d+$/;
const NUMBER = /^[+-]?(\d+\.\d*|\d*\.\d+|\d+)([eE][+-]?\d+)?$/;
const NODE_NAME = /^(?=.{1,63}$)[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/;
const CONFIG_ID = /^[a-z][a-z0-9_-]+$/i;
const HA_SID = /^(?:(?:ct|vm):)?\d+$/;
const TASK_STATUS = new Set(['ok', 'warning', 'error', 'unknown']);

const patternCache = new Map<string, RegExp | null>();
function compilePattern(p: string): RegExp | null {
  let re = patternCache.get(p);
  if (re === undefined) {
    try {
      // PVE writes Perl regexes: `(?^:…)` is a non-capturing group there; patterns are anchored.
      re = new RegExp(`^(?:${p.replaceAll('(?^:', '(?:')})$`);
    } catch {
      re = null; // a construct JS does not know: do not pretend to check it
    }
    patternCache.set(p, re);
  }
  return re;
}

function checkFormat(format: JsonSchema['format'], v: string): string | undefined {
  if (typeof format !== 'string') return undefined; // property strings (net[n], rootfs, …) are not parsed
  switch (format) {
    case 'pve-node':
      return NODE_NAME.test(v) ? undefined : 'invalid format - value does not look like a valid node name';
    case 'pve-configid':
      return CONFIG_ID.test(v) ? undefined : `invalid format - invalid configuration ID '${v}'`;
    case 'pve-ha-resource-or-vm-id':
      return HA_SID.test(v) ? undefined : `invalid format - unable to parse HA resource id '${v}'`;
    case 'pve-task-status-type-list':
      for (const s of v.split(/[,; ]+/).filter(Boolean)) if (!TASK_STATUS.has(s)) return `invalid format - invalid task status type '${s}'`;
      return undefined;
    default:
      return undefined;
  }
}

/** Checks one value against its property schema; returns the typed value or an error message. */
export function checkValue(prop: JsonSchema, v: string): { value: string | number | boolean } | { error: string } {
  let value: string | number | boolean = v;
  switch (prop.type) {
    case 'integer':
      if (!INTEGER.test(v)) return { error: `type check ('integer') failed - got '${v}'` };
      value = Number(v);
      break;
    case 'number':
      if (!NUMBER.test(v)) return { error: `type check ('number') failed - got '${v}'` };
      value = Number(v);
      break;
    case 'boolean':
      if (v !== '0' && v !== '1') return { error: `type check ('boolean') failed - got '${v}'` };
      value = v === '1';
      break;
    default:
      break;
  }
  if (prop.enum && !prop.enum.map(String).includes(v)) {
    return { error: `value '${v}' does not have a value in the enumeration '${prop.enum.join(', ')}'` };
  }
  if (typeof value === 'number') {
    if (prop.minimum !== undefined && value < Number(prop.minimum)) return { error: `value must have a minimum value of ${prop.minimum}` };
    if (prop.maximum !== undefined && value > Number(prop.maximum)) return { error: `value must have a maximum value of ${prop.maximum}` };
  }
  if (typeof value === 'string') {
    if (prop.maxLength !== undefined && v.length > prop.maxLength) return { error: `value may only be ${prop.maxLength} characters long` };
    if (prop.minLength !== undefined && v.length < prop.minLength) return { error: `value must have at least ${prop.minLength} characters` };
  }
  if (prop.pattern) {
    const re = compilePattern(prop.pattern);
    if (re && !re.test(v)) return { error: 'value does not match the regex pattern' };
  }
  const formatError = checkFormat(prop.format, v);
  if (formatError) return { error: formatError };
  return { value };
}

/** `net[n]`-style names in the schema stand for net0, net1, … */
function indexedProperty(props: Record<string, JsonSchema>, name: string): JsonSchema | undefined {
  const m = /^([a-z_-]+?)(\d+)$/i.exec(name);
  return m ? props[`${m[1]}[n]`] : undefined;
}

export function validateParams(schema: JsonSchema | undefined, raw: RawParams): ParamResult {
  const props = schema?.properties ?? {};
  const closed = schema?.additionalProperties !== undefined && !schema.additionalProperties;
  const errors: Record<string, string> = {};
  const values: ParamValues = {};
  for (const [name, v] of Object.entries(raw)) {
    const prop = props[name] ?? indexedProperty(props, name);
    if (!prop) {
      if (closed) errors[name] = 'property is not defined in schema and the schema does not allow additional properties';
      else values[name] = v;
      continue;
    }
    const r = checkValue(prop, v);
    if ('error' in r) errors[name] = r.error;
    else values[name] = r.value;
  }
  for (const [name, prop] of Object.entries(props)) {
    if (name.endsWith('[n]')) continue;
    if (!prop.optional && raw[name] === undefined && errors[name] === undefined) errors[name] = 'property is missing and it is not optional';
    if (prop.requires && raw[name] !== undefined && raw[prop.requires] === undefined && errors[prop.requires] === undefined) {
      errors[prop.requires] = `parameter '${prop.requires}' is missing, but required by '${name}'`;
    }
  }
  return Object.keys(errors).length ? { ok: false, errors } : { ok: true, values };
}
