// Parameter verification as PVE does it, from the official schema's `parameters`:
// unknown properties, missing required ones, types, enums, simple patterns and ranges.
import { readFileSync } from 'node:fs';

export interface ParamSchema {
  type?: string;
  optional?: number;
  enum?: string[];
  pattern?: string;
  minimum?: number;
  maximum?: number;
  maxLength?: number;
  format?: unknown;
}
export interface MethodSchema {
  parameters?: { additionalProperties?: number; properties?: Record<string, ParamSchema> };
  returns?: unknown;
}
export type ApiSchema = Record<string, Record<string, MethodSchema>>;

export const API_SCHEMA: ApiSchema = JSON.parse(readFileSync(new URL('./pve-schema.json', import.meta.url), 'utf8')) as ApiSchema;

const BOOL = /^(1|0|true|false|yes|no|on|off)$/i;

function lookup(props: Record<string, ParamSchema>, name: string): ParamSchema | undefined {
  if (props[name]) return props[name];
  // indexed families: net0 → net[n]
  const m = /^([a-z_-]+?)(\d+)$/.exec(name);
  return m ? props[`${m[1]}[n]`] : undefined;
}

/** Returns PVE-style `{param: message}` errors, empty when valid. */
export function verifyParams(schema: MethodSchema, params: Record<string, string>): Record<string, string> {
  const errors: Record<string, string> = {};
  const props = schema.parameters?.properties ?? {};
  const strict = schema.parameters?.additionalProperties === 0;
  for (const [name, value] of Object.entries(params)) {
    const p = lookup(props, name);
    if (!p) {
      if (strict) errors[name] = 'property is not defined in schema and the schema does not allow additional properties';
      continue;
    }
    const err = checkValue(p, value);
    if (err) errors[name] = err;
  }
  for (const [name, p] of Object.entries(props)) {
    if (!p.optional && !name.includes('[n]') && params[name] === undefined) errors[name] = 'property is missing and it is not optional';
  }
  return errors;
}

function checkValue(p: ParamSchema, value: string): string | undefined {
  switch (p.type) {
    case 'integer': {
      if (!/^-?\d+$/.test(value)) return `type check ('integer') failed - got '${value}'`;
      const n = Number(value);
      if (p.minimum !== undefined && n < p.minimum) return `value must have a minimum value of ${p.minimum}`;
      if (p.maximum !== undefined && n > p.maximum) return `value must have a maximum value of ${p.maximum}`;
      return undefined;
    }
    case 'number': {
      if (!/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(value)) return `type check ('number') failed - got '${value}'`;
      const n = Number(value);
      if (p.minimum !== undefined && n < p.minimum) return `value must have a minimum value of ${p.minimum}`;
      if (p.maximum !== undefined && n > p.maximum) return `value must have a maximum value of ${p.maximum}`;
      return undefined;
    }
    case 'boolean':
      return BOOL.test(value) ? undefined : `type check ('boolean') failed - got '${value}'`;
    case 'string':
    default: {
      if (p.enum && !p.enum.includes(value)) return `value '${value}' does not have a value in the enumeration '${p.enum.join(', ')}'`;
      if (p.maxLength !== undefined && value.length > p.maxLength) return `value may only be ${p.maxLength} characters long`;
      if (p.pattern) {
        try {
          if (!new RegExp(`^(?:${p.pattern})$`).test(value)) return `value does not match the regex pattern`;
        } catch {
          /* a Perl-only pattern: PVE checks it, we do not */
        }
      }
      if (p.format === 'pve-node' && !/^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$/.test(value)) return `value does not look like a valid node name`;
      return undefined;
    }
  }
}

export const isTrue = (v: string | undefined): boolean => v !== undefined && /^(1|true|yes|on)$/i.test(v);
