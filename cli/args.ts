// Flag parsing shared by every command: node:util parseArgs, strict, with `--help` and one-line errors.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { HomeostatError } from '../core/mod.ts';

export type Options = NonNullable<ParseArgsConfig['options']>;

export const COMMON_OPTIONS = {
  nats: { type: 'string' },
  /** The identity file (nkey seed) to connect as; default NATS_CREDS, then ./.homeostat/creds/operator.nk. */
  creds: { type: 'string' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies Options;

export interface Parsed<V> {
  values: V;
  positionals: string[];
}

export function parseCommand<O extends Options>(argv: string[], options: O, allowPositionals = true) {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (e) {
    throw new HomeostatError('HOMEOSTAT_ERR_USAGE', (e as Error).message.split('\n')[0]);
  }
}

export function parseIntFlag(name: string, value: string | undefined, min = 0, max = 65535): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `--${name}: expected an integer ${min}..${max}, got ${JSON.stringify(value)}`);
  }
  return n;
}
