// A small validator for the PVE API schema format (pve-docs apidata / schema-subset.json):
// type object|array|string|integer|number|boolean|null, enum, pattern, minimum/maximum,
// properties without `optional` are required, `items`, nested `properties`, `additionalProperties`
// (absent = extra keys allowed, like PVE's JSONSchema.pm; 0 = refused; a schema = extra values
// checked against it). Booleans may be 0/1, as PVE's Perl encoder writes them.
import { readFileSync } from 'node:fs';

export interface PveSchemaNode {
  type?: string;
  properties?: Record<string, PveSchemaNode>;
  items?: PveSchemaNode;
  additionalProperties?: number | boolean | PveSchemaNode;
  optional?: number | boolean;
  enum?: (string | number)[];
  pattern?: string;
  minimum?: number | string;
  maximum?: number | string;
  [k: string]: unknown;
}

export interface PveMethodDef {
  method: string;
  parameters?: PveSchemaNode;
  returns?: PveSchemaNode;
}

export type PveApiSchema = Record<string, Record<string, PveMethodDef>>;

export interface SchemaProblem {
  /** JSON path of the offending value, e.g. `$[3].status`. */
  path: string;
  problem: string;
}

/** The official schema subset: the shared copy when present, else the simulator's copy of it. */
// ../shared sits next to the project root on every developer and CI machine, wherever that is
export const OFFICIAL_SCHEMA_PATH = new URL('../../../shared/pve-api/schema-subset.json', import.meta.url);
export const SIM_SCHEMA_URL = new URL('../../fleet/sim/pve-schema-subset.json', import.meta.url);
/** The official schema of the endpoints real clients reach for next (storage, pools, access, …). */
export const OFFICIAL_EXTRA_SCHEMA_PATH = new URL('../../../shared/pve-api/schema-extra.json', import.meta.url);
export const SIM_EXTRA_SCHEMA_URL = new URL('../../fleet/sim/pve-schema-extra.json', import.meta.url);

export function loadPveSchema(path: string | URL = SIM_SCHEMA_URL): PveApiSchema {
  return JSON.parse(readFileSync(path, 'utf8')) as PveApiSchema;
}

function compile(pattern: string): RegExp | undefined {
  try {
    return new RegExp(`^(?:${pattern.replaceAll('(?^:', '(?:')})$`);
  } catch {
    return undefined;
  }
}

const show = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'string' ? `string ${JSON.stringify(v.slice(0, 40))}` : `${typeof v} ${JSON.stringify(v)}`);

/** Checks `value` against `schema`; returns every problem found (empty = valid). */
export function validatePveValue(schema: PveSchemaNode | undefined, value: unknown, path = '$'): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  if (!schema) return out;
  const add = (problem: string, at = path) => out.push({ path: at, problem });
  const type = schema.type ?? (schema.properties ? 'object' : schema.items ? 'array' : undefined);
  switch (type) {
    case 'null':
      if (value !== null) add(`expected null, got ${show(value)}`);
      return out;
    case 'string':
      if (typeof value !== 'string') return add(`expected string, got ${show(value)}`), out;
      if (schema.pattern) {
        const re = compile(schema.pattern);
        if (re && !re.test(value)) add(`${JSON.stringify(value)} does not match pattern ${schema.pattern}`);
      }
      break;
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) return add(`expected integer, got ${show(value)}`), out;
      break;
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) return add(`expected number, got ${show(value)}`), out;
      break;
    case 'boolean':
      if (value !== true && value !== false && value !== 0 && value !== 1) return add(`expected boolean (or 0/1), got ${show(value)}`), out;
      break;
    case 'array':
      if (!Array.isArray(value)) return add(`expected array, got ${show(value)}`), out;
      value.forEach((item, i) => out.push(...validatePveValue(schema.items, item, `${path}[${i}]`)));
      return out;
    case 'object': {
      if (value === null || typeof value !== 'object' || Array.isArray(value)) return add(`expected object, got ${show(value)}`), out;
      const obj = value as Record<string, unknown>;
      const props = schema.properties ?? {};
      for (const [k, sub] of Object.entries(props)) {
        const at = `${path}.${k}`;
        if (obj[k] === undefined) {
          if (!sub.optional) add('required property is missing', at);
          continue;
        }
        out.push(...validatePveValue(sub, obj[k], at));
      }
      const extra = schema.additionalProperties;
      for (const k of Object.keys(obj)) {
        if (k in props) continue;
        if (extra !== undefined && typeof extra !== 'object' && !extra) add('property not in the schema, which allows no additional properties', `${path}.${k}`);
        else if (extra && typeof extra === 'object') out.push(...validatePveValue(extra, obj[k], `${path}.${k}`));
      }
      return out;
    }
    default:
      break;
  }
  if (schema.enum && !schema.enum.map(String).includes(String(value))) add(`${JSON.stringify(value)} is not one of ${schema.enum.join(', ')}`);
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < Number(schema.minimum)) add(`${value} is below the minimum ${schema.minimum}`);
    if (schema.maximum !== undefined && value > Number(schema.maximum)) add(`${value} is above the maximum ${schema.maximum}`);
  }
  return out;
}

/** Every `METHOD path` pair of the schema, e.g. `GET /nodes/{node}/lxc`. */
export function schemaMethods(schema: PveApiSchema, method?: string): { path: string; method: string; def: PveMethodDef }[] {
  const out: { path: string; method: string; def: PveMethodDef }[] = [];
  for (const [path, methods] of Object.entries(schema)) {
    for (const [m, def] of Object.entries(methods)) if (!method || m === method) out.push({ path, method: m, def });
  }
  return out;
}
