// How to reach a PVE API: parsed once by zod (from code or from env), then frozen. Errors name the
// option or the environment variable and never echo a secret.
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { HomeostatError, type Logger } from '../core/mod.ts';

// proxmox-api itself refuses anything else (with a console.error), so we refuse it first, clearly.
const TOKEN_ID = /^[^@\s!]+@[^@\s!]+![A-Za-z0-9][A-Za-z0-9._-]*$/;
const TOKEN_SECRET = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const pveUrl = z.string().superRefine((v, ctx) => {
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    ctx.addIssue({ code: 'custom', message: 'expected an http(s) URL of the PVE API, e.g. https://pve.lan:8006' });
    return;
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') {
    ctx.addIssue({ code: 'custom', message: `expected an http(s) URL of the PVE API, e.g. https://pve.lan:8006 (not ${u.protocol})` });
  } else if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.username) {
    // proxmox-api always talks to /api2/json at the root of host:port; a path would be silently dropped.
    ctx.addIssue({ code: 'custom', message: 'expected only scheme, host and port, e.g. https://pve.lan:8006 (no path, query or user)' });
  }
});

export const PveConnection = z.object({
  /** e.g. https://pve.lan:8006 — scheme, host and port only. */
  url: pveUrl,
  /** USER@REALM!TOKENID, e.g. homeostat@pve!agent */
  tokenId: z.string().regex(TOKEN_ID, 'expected USER@REALM!TOKENID, e.g. homeostat@pve!agent'),
  /** The UUID `pveum user token add` printed once. */
  tokenSecret: z.string().regex(TOKEN_SECRET, 'expected the token secret as the lowercase UUID pveum printed'),
  /** PEM of the CA (or the self-signed certificate) to trust for https, e.g. /etc/pve/pve-root-ca.pem. */
  caPem: z.string().includes('-----BEGIN CERTIFICATE-----', { message: 'expected a PEM certificate' }).optional(),
  /** Skip certificate verification. Only ever true when asked for explicitly. */
  insecure: z.boolean().default(false),
  /** Budget of one attempt of one call, headers and body. */
  timeoutMs: z.number().int().min(1).max(600_000).default(5000),
  /** Further attempts after a 5xx/595, a network error or a timeout. Never after a 4xx. */
  retries: z.number().int().min(0).max(20).default(3),
  /** First backoff step; doubles per retry up to retryMaxMs, each step jittered to 50–100 %. */
  retryBaseMs: z.number().int().min(0).default(200),
  retryMaxMs: z.number().int().min(0).default(2000),
});
export type PveConnection = z.infer<typeof PveConnection>;

/** One attempt of one call, for metrics and tests (counting requests). */
export interface PveRequestEvent {
  method: string;
  path: string;
  attempt: number;
  status?: number;
  error?: string;
  ms: number;
}

export type PveClientOptions = z.input<typeof PveConnection> & {
  log?: Logger;
  onRequest?: (e: PveRequestEvent) => void;
};

const ENV_NAME: Record<string, string> = { url: 'PVE_URL', tokenId: 'PVE_TOKEN_ID', tokenSecret: 'PVE_TOKEN_SECRET', caPem: 'PVE_CA_FILE', insecure: 'PVE_INSECURE' };

export function parsePveConnection(opts: z.input<typeof PveConnection>): Readonly<PveConnection> {
  const r = PveConnection.safeParse(opts);
  if (!r.success) {
    const i = r.error.issues[0];
    const key = String(i.path[0] ?? '');
    // Name the environment variable too: that is where a user usually set the value.
    const name = ENV_NAME[key] ? `${ENV_NAME[key]} (PVE client option ${key})` : `PVE client option ${i.path.join('.') || 'options'}`;
    throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', `${name}: ${i.message}`);
  }
  return Object.freeze(r.data);
}

const flag = z
  .enum(['0', '1', 'true', 'false', 'yes', 'no'], { message: 'expected 1 or 0' })
  .transform((v) => v === '1' || v === 'true' || v === 'yes');

/** The PVE_* environment variables, one rule each. */
const PveEnv = z.object({
  PVE_URL: pveUrl,
  PVE_TOKEN_ID: PveConnection.shape.tokenId,
  PVE_TOKEN_SECRET: PveConnection.shape.tokenSecret,
  PVE_CA_FILE: z.string().min(1),
  PVE_INSECURE: flag,
}).partial();

export const PVE_ENV_VARS = Object.keys(PveEnv.shape) as (keyof z.infer<typeof PveEnv>)[];

/** What the PVE_* variables say, checked: the one reading of them (the CLI's config and
 *  `pveClientOptionsFromEnv` both use it). `caPem` is PVE_CA_FILE's content. */
export interface PveSettings {
  url?: string;
  tokenId?: string;
  tokenSecret?: string;
  caFile?: string;
  caPem?: string;
  /** PVE_INSECURE=1: skip certificate checks (wins over PVE_CA_FILE, with a warning from the client). */
  insecure: boolean;
}

const configError = (name: string, message: string, cause?: unknown) =>
  new HomeostatError('HOMEOSTAT_ERR_CONFIG', `${name}: ${message}`, cause === undefined ? undefined : { cause });

/**
 * Parse PVE_URL, PVE_TOKEN_ID, PVE_TOKEN_SECRET, PVE_CA_FILE (read and checked here) and
 * PVE_INSECURE. Unset and empty are the same. `required`: PVE_URL and the token must be set (a
 * client is about to be made); otherwise all may be absent, but the token's two halves go
 * together. Throws HOMEOSTAT_ERR_CONFIG with one line that starts with the variable and never
 * echoes a secret.
 */
export function pveSettingsFromEnv(env: Record<string, string | undefined>, opts: { required?: boolean } = {}): PveSettings {
  const input: Record<string, string> = {};
  for (const k of PVE_ENV_VARS) {
    const v = env[k];
    if (v !== undefined && v !== '') input[k] = v;
  }
  const r = PveEnv.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    const name = String(i.path[0] ?? 'PVE_URL');
    const got = input[name] !== undefined && !name.includes('SECRET') ? ` (got ${JSON.stringify(input[name].slice(0, 80))})` : '';
    throw configError(name, `${i.message}${got}`);
  }
  const e = r.data;
  if (opts.required) {
    for (const k of ['PVE_URL', 'PVE_TOKEN_ID', 'PVE_TOKEN_SECRET'] as const) if (!e[k]) throw configError(k, 'required (see docs/real-pve.md)');
  } else if (!!e.PVE_TOKEN_ID !== !!e.PVE_TOKEN_SECRET) {
    const [missing, other] = e.PVE_TOKEN_ID ? ['PVE_TOKEN_SECRET', 'PVE_TOKEN_ID'] : ['PVE_TOKEN_ID', 'PVE_TOKEN_SECRET'];
    throw configError(missing, `expected to be set together with ${other}`);
  }
  let caPem: string | undefined;
  if (e.PVE_CA_FILE) {
    try {
      caPem = readFileSync(e.PVE_CA_FILE, 'utf8');
    } catch (err) {
      throw configError('PVE_CA_FILE', `cannot read ${JSON.stringify(e.PVE_CA_FILE)} (${(err as NodeJS.ErrnoException).code ?? String(err)})`, err);
    }
    if (!caPem.includes('-----BEGIN CERTIFICATE-----')) {
      throw configError('PVE_CA_FILE', `${JSON.stringify(e.PVE_CA_FILE)} holds no PEM certificate (expected e.g. /etc/pve/pve-root-ca.pem)`);
    }
  }
  return Object.freeze({
    ...(e.PVE_URL ? { url: e.PVE_URL } : {}),
    ...(e.PVE_TOKEN_ID ? { tokenId: e.PVE_TOKEN_ID, tokenSecret: e.PVE_TOKEN_SECRET } : {}),
    ...(e.PVE_CA_FILE ? { caFile: e.PVE_CA_FILE, caPem } : {}),
    insecure: e.PVE_INSECURE ?? false,
  });
}

/** Options for createPveClient from the PVE_* variables (all three of URL and token required). */
export function pveClientOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): PveConnection {
  const p = pveSettingsFromEnv(env, { required: true });
  return PveConnection.parse({ url: p.url, tokenId: p.tokenId, tokenSecret: p.tokenSecret, caPem: p.caPem, insecure: p.insecure });
}
