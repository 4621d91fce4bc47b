// Config is parsed once, by zod, at the edge (env + flags), then frozen and passed down.
import { existsSync, readFileSync } from 'node:fs';
import { z } from 'zod';
import { HomeostatError } from '../../core/mod.ts';
import { PVE_ENV_VARS, pveSettingsFromEnv } from '../../fleet/pve-config.ts';
import { parseNotifierList, splitNotifierList } from '../../fleet/notify-targets.ts';

const url = (protocols: string[], what: string) =>
  z.string().refine((v) => {
    try {
      return protocols.includes(new URL(v).protocol);
    } catch {
      return false;
    }
  }, `expected ${what}`);

/** One URL, or a comma-separated list of a cluster's servers (clients reconnect to any of them). */
const urlList = (protocols: string[], what: string) =>
  z.string().refine((v) => v.split(',').every((one) => {
    try {
      return protocols.includes(new URL(one.trim()).protocol);
    } catch {
      return false;
    }
  }), `expected ${what}`);

const bool = z
  .enum(['0', '1', 'true', 'false', 'yes', 'no', ''], { message: 'expected 1 or 0' })
  .transform((v) => v === '1' || v === 'true' || v === 'yes');

const keyList = z.string().transform((v) => v.split(',').map((k) => k.trim()).filter(Boolean))
  .refine((ks) => ks.length > 0 && ks.every((k) => /^U[A-Z2-7]{55}$/.test(k)), 'expected comma-separated NATS user public keys (U…, 56 characters)');

export const ConfigSchema = z.object({
  NATS_URL: urlList(['nats:', 'tls:', 'ws:', 'wss:'], 'a nats:// URL or a comma-separated list of them, e.g. nats://127.0.0.1:4222').default('nats://127.0.0.1:4222'),
  // PVE_URL, PVE_TOKEN_ID, PVE_TOKEN_SECRET, PVE_CA_FILE, PVE_INSECURE: read by the adapter's one
  // reader of them (pveSettingsFromEnv, fleet/pve-config.ts) and merged into the config below
  /** How long one PVE API request may take (each retry of a read doubles it, up to 60 s). */
  PVE_TIMEOUT_MS: z.coerce.number({ message: 'expected milliseconds' }).int().min(50).max(600_000).default(5000),
  OLLAMA_HOST: url(['http:', 'https:'], 'an http(s) URL, e.g. http://127.0.0.1:11434').default('http://127.0.0.1:11434'),
  OLLAMA_MODEL: z.string().min(1).max(200).default('qwen2.5:7b-instruct'),
  OLLAMA_TIMEOUT_MS: z.coerce.number({ message: 'expected milliseconds' }).int().min(100).max(600_000).default(20_000),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], { message: 'expected one of trace|debug|info|warn|error|fatal|silent' }).default('info'),
  HOMEOSTAT_FLEET: z.string().refine((p) => existsSync(p), 'expected a fleet manifest file (YAML or JSON)').optional(),
  HOMEOSTAT_DRY_RUN: bool.default(false),
  /** Shared secret PVE hookscripts send (Authorization: Bearer) to sensing's /pve/hook. */
  HOMEOSTAT_HOOK_TOKEN: z.string().regex(/^\S{16,200}$/, 'expected 16-200 characters without spaces, e.g. from `openssl rand -hex 16`').optional(),
  /** Steps (start, shutdown, stop, recover a guest) one workflows agent runs at once, over all its
   *  workflows; the rest wait in line (FIFO), their timeouts not yet running. */
  HOMEOSTAT_WORKFLOW_STEPS: z.coerce.number({ message: 'expected a whole number of steps, e.g. 64' }).int({ message: 'expected a whole number of steps, e.g. 64' }).min(1).max(100_000).default(64),
  /** This process's NATS identity: an nkey seed file (`<data-dir>/creds/<identity>.nk`). */
  NATS_CREDS: z.string().refine((p) => existsSync(p), 'expected a credentials file (an nkey seed file from <data-dir>/creds/)').optional(),
  /** CA bundle for a tls:// NATS_URL. */
  NATS_CA: z.string().refine((p) => existsSync(p), 'expected a readable PEM file').optional(),
  /** Public keys (comma-separated) whose signatures the action agent accepts: the decision agent's. */
  HOMEOSTAT_DECISION_KEYS: keyList.optional(),
  /** Public keys (comma-separated) of the operators whose signed approvals the decision agent accepts. */
  HOMEOSTAT_OPERATOR_KEYS: keyList.optional(),
  /** The trusted public keys as `homeostat init` writes them (<data-dir>/creds/trust.json): the
   *  decision agent's and the operators'. HOMEOSTAT_DECISION_KEYS / HOMEOSTAT_OPERATOR_KEYS win. */
  HOMEOSTAT_TRUST_FILE: z.string().refine((p) => existsSync(p), 'expected the trust file `homeostat init` writes (<data-dir>/creds/trust.json)').optional(),
  /** Notifier URLs, comma-separated (agents/notify); replaces the manifest's notify.urls. */
  HOMEOSTAT_NOTIFY: z.string().transform(splitNotifierList).superRefine((urls, ctx) => {
    const r = parseNotifierList(urls);
    if ('error' in r) ctx.addIssue({ code: 'custom', message: r.error });
  }).optional(),
  /** Grouping of notifications (override the manifest's notify section). */
  HOMEOSTAT_NOTIFY_GROUP_WAIT_MS: z.coerce.number({ message: 'expected milliseconds' }).int().min(0).max(3_600_000).optional(),
  HOMEOSTAT_NOTIFY_GROUP_INTERVAL_MS: z.coerce.number({ message: 'expected milliseconds' }).int().min(0).max(86_400_000).optional(),
  HOMEOSTAT_NOTIFY_REPEAT_INTERVAL_MS: z.coerce.number({ message: 'expected milliseconds' }).int().min(1000).max(7 * 86_400_000).optional(),
});

export type Config = Readonly<z.infer<typeof ConfigSchema> & {
  PVE_URL?: string;
  PVE_TOKEN_ID?: string;
  PVE_TOKEN_SECRET?: string;
  PVE_CA_FILE?: string;
  PVE_INSECURE: boolean;
  /** PVE_CA_FILE's content. */
  pveCaPem?: string;
}>;

export const CONFIG_VARS = [...Object.keys(ConfigSchema.shape), ...PVE_ENV_VARS] as (keyof z.infer<typeof ConfigSchema> | (typeof PVE_ENV_VARS)[number])[];

/** Parse env (plus flag overrides, which win) once. Throws HOMEOSTAT_ERR_CONFIG naming the variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Record<string, string | undefined>> = {}): Config {
  const input: Record<string, string> = {};
  for (const k of CONFIG_VARS) {
    const v = overrides[k] ?? env[k];
    if (v !== undefined && v !== '') input[k] = v;
  }
  const r = ConfigSchema.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    const name = String(i.path[0] ?? 'config');
    // notifier URLs carry passwords and tokens: the issue names the notifier, redacted
    const got = input[name] !== undefined && !/SECRET|NOTIFY$/.test(name) ? ` (got ${JSON.stringify(input[name].slice(0, 80))})` : '';
    throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', `${name}: ${i.message}${got}`);
  }
  const c = r.data;
  const pve = pveSettingsFromEnv(input);
  const trust = c.HOMEOSTAT_TRUST_FILE ? readTrustFile(c.HOMEOSTAT_TRUST_FILE) : undefined;
  return Object.freeze({
    ...c,
    HOMEOSTAT_DECISION_KEYS: c.HOMEOSTAT_DECISION_KEYS ?? trust?.decision,
    HOMEOSTAT_OPERATOR_KEYS: c.HOMEOSTAT_OPERATOR_KEYS ?? trust?.operators,
    PVE_URL: pve.url, PVE_TOKEN_ID: pve.tokenId, PVE_TOKEN_SECRET: pve.tokenSecret, PVE_CA_FILE: pve.caFile, PVE_INSECURE: pve.insecure, pveCaPem: pve.caPem,
  });
}

const publicKey = z.string().regex(/^U[A-Z2-7]{55}$/, 'expected a NATS user public key (U…, 56 characters)');
/** What `homeostat init` writes next to the identities: public keys only, no secret. */
export const TrustFile = z.object({ decision: z.array(publicKey).min(1), operators: z.array(publicKey).min(1) });
export type TrustFile = z.infer<typeof TrustFile>;

function readTrustFile(path: string): TrustFile {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', `HOMEOSTAT_TRUST_FILE: cannot read ${path} as JSON: ${(e as Error).message}`);
  }
  const r = TrustFile.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', `HOMEOSTAT_TRUST_FILE: ${path}: ${i.path.join('.')}: ${i.message}`);
  }
  return r.data;
}
