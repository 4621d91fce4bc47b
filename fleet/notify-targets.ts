// Notifier URLs (HOMEOSTAT_NOTIFY, the manifest's `notify.urls`): one grammar, parsed once at the
// edge into typed targets. Pure (no I/O): the manifest validates with it, so `fleet validate`
// and start-up name a bad URL the same way. A target's `name` is what logs and status show: it
// never holds the secret parts of the URL (password, token, the path of a webhook, the topic).
import { z } from 'zod';

export interface WebhookTarget { kind: 'webhook'; name: string; url: string; authorization?: string }
export interface NtfyTarget { kind: 'ntfy'; name: string; url: string; authorization?: string }
export interface SlackTarget { kind: 'slack'; name: string; url: string }
export interface SmtpTarget {
  kind: 'smtp';
  name: string;
  host: string;
  port: number;
  /** smtps://: TLS from the first byte. */
  secure: boolean;
  /** smtp://: upgrade when the server offers STARTTLS (auto), insist on it (required), or never (off). */
  starttls: 'auto' | 'required' | 'off';
  /** Skip certificate verification (a relay with a self-signed certificate). */
  insecure: boolean;
  user?: string;
  pass?: string;
  from: string;
  to: string[];
}
export type NotifierTarget = WebhookTarget | NtfyTarget | SlackTarget | SmtpTarget;

const SCHEMES = 'http(s)://, ntfy(s)://, slack://, smtp(s)://';
const TRUE = new Set(['', '1', 'true', 'yes', 'on']);
const FALSE = new Set(['0', 'false', 'no', 'off']);
const EMAIL = /^[^\s@<>,;"]+@[^\s@<>,;"]+$/;

/** The URL with nothing secret in it, for messages: scheme, user, host, and `/…` for a path. */
export function redactUrl(raw: string): string {
  try {
    const u = new URL(raw);
    const user = u.username ? `${decodeURIComponent(u.username)}${u.password ? ':***' : ''}@` : '';
    return `${u.protocol}//${user}${u.host}${u.pathname.length > 1 || u.search ? '/…' : ''}`;
  } catch {
    const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(raw)?.[0];
    return scheme ? `${scheme}…` : '(not a URL)';
  }
}

class BadTarget extends Error {}
const bad = (msg: string): never => {
  throw new BadTarget(msg);
};

function flag(params: URLSearchParams, key: string): boolean | undefined {
  const v = params.get(key);
  if (v === null) return undefined;
  if (TRUE.has(v.toLowerCase())) return true;
  if (FALSE.has(v.toLowerCase())) return false;
  return bad(`?${key}=${v}: expected 1 or 0`);
}

function onlyParams(params: URLSearchParams, known: string[]): void {
  for (const k of params.keys()) if (!known.includes(k)) bad(`unknown parameter ?${k} (known: ${known.join(', ')})`);
}

/** One notifier URL → its target (throws an Error whose message says what is wrong). */
function parseOne(raw: string): NotifierTarget {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return bad(`not a URL: expected ${SCHEMES}`);
  }
  const params = u.searchParams;
  const given = params.get('name') ?? undefined;
  if (given !== undefined && !/^[\w .:@-]{1,60}$/.test(given)) bad('?name: expected 1-60 letters, digits, spaces or .:@_-');
  if (!u.hostname) bad('expected a host');
  const scheme = u.protocol.slice(0, -1);
  switch (scheme) {
    case 'http':
    case 'https': {
      params.delete('name');
      // fetch refuses credentials in a URL: they become a Basic authorization header
      const authorization = u.username ? `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}` : undefined;
      u.username = '';
      u.password = '';
      return { kind: 'webhook', name: given ?? `webhook ${u.host}`, url: u.toString(), ...(authorization ? { authorization } : {}) };
    }
    case 'ntfy':
    case 'ntfys': {
      onlyParams(params, ['name', 'tls', 'token']);
      const topic = u.pathname.replace(/^\/|\/$/g, '');
      if (!/^[-_A-Za-z0-9]{1,64}$/.test(topic)) bad('expected ntfy://host/topic (one topic: letters, digits, - and _)');
      const tls = scheme === 'ntfys' || flag(params, 'tls') === true;
      const token = params.get('token');
      const authorization = token ? `Bearer ${token}`
        : u.username ? `Basic ${Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64')}` : undefined;
      return { kind: 'ntfy', name: given ?? `ntfy ${u.host}`, url: `${tls ? 'https' : 'http'}://${u.host}/${topic}`, ...(authorization ? { authorization } : {}) };
    }
    case 'slack': {
      onlyParams(params, ['name', 'tls']);
      if (u.pathname.length <= 1) bad('expected slack://host/path of the incoming webhook (e.g. slack://hooks.slack.com/services/T…/B…/…)');
      if (u.username) bad('expected no credentials: the webhook path is the secret');
      const tls = flag(params, 'tls') !== false;
      return { kind: 'slack', name: given ?? `slack ${u.host}`, url: `${tls ? 'https' : 'http'}://${u.host}${u.pathname}` };
    }
    case 'smtp':
    case 'smtps': {
      onlyParams(params, ['name', 'from', 'to', 'starttls', 'insecure']);
      const secure = scheme === 'smtps';
      const port = u.port ? Number(u.port) : secure ? 465 : 25;
      const from = params.get('from') ?? bad('expected ?from=ADDRESS');
      if (!EMAIL.test(from)) bad(`?from: not an e-mail address`);
      const to = params.getAll('to').flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean);
      if (!to.length) bad('expected ?to=ADDRESS[,ADDRESS…]');
      for (const t of to) if (!EMAIL.test(t)) bad(`?to: ${JSON.stringify(t)} is not an e-mail address`);
      const st = params.get('starttls')?.toLowerCase();
      const starttls = st === undefined || st === 'auto' ? 'auto' : st === 'required' || TRUE.has(st) ? 'required' : FALSE.has(st) ? 'off' : bad(`?starttls=${st}: expected auto, required or off`);
      if (secure && starttls === 'required') bad('?starttls: smtps:// is TLS already');
      const user = u.username ? decodeURIComponent(u.username) : undefined;
      if (u.password && !user) bad('a password needs a user');
      return {
        kind: 'smtp', name: given ?? `smtp ${u.hostname}:${port}`, host: u.hostname.replace(/^\[|\]$/g, ''), port, secure,
        starttls: secure ? 'off' : starttls, insecure: flag(params, 'insecure') === true,
        ...(user ? { user, pass: decodeURIComponent(u.password) } : {}), from, to,
      };
    }
    default:
      return bad(`unsupported scheme ${scheme}:// (expected ${SCHEMES})`);
  }
}

/** Parse one URL: its target, or what is wrong with it (the URL redacted). */
export function parseNotifierUrl(raw: string): { target: NotifierTarget } | { error: string } {
  try {
    return { target: parseOne(raw.trim()) };
  } catch (e) {
    if (e instanceof BadTarget) return { error: `${redactUrl(raw.trim())}: ${e.message}` };
    throw e;
  }
}

/** A comma-separated list (HOMEOSTAT_NOTIFY): targets, or the first problem naming the notifier. */
export function parseNotifierList(list: readonly string[]): { targets: NotifierTarget[] } | { error: string } {
  const targets: NotifierTarget[] = [];
  for (const [i, raw] of list.entries()) {
    const r = parseNotifierUrl(raw);
    if ('error' in r) return { error: `notifier ${i + 1} (${r.error})` };
    targets.push(r.target);
  }
  // two notifiers of one kind on one host: keep their names apart in logs and status
  const seen = new Map<string, number>();
  return {
    targets: targets.map((t) => {
      const n = (seen.get(t.name) ?? 0) + 1;
      seen.set(t.name, n);
      return n > 1 ? { ...t, name: `${t.name} #${n}` } : t;
    }),
  };
}

/** `a,b , c` → the URLs (an empty list for an empty string). */
export const splitNotifierList = (v: string): string[] => v.split(',').map((s) => s.trim()).filter(Boolean);

/** A notifier URL in the manifest: checked by the same grammar as HOMEOSTAT_NOTIFY. */
export const NotifierUrl = z.string().superRefine((v, ctx) => {
  const r = parseNotifierUrl(v);
  if ('error' in r) ctx.addIssue({ code: 'custom', message: r.error });
});

/** Grouping in the spirit of Alertmanager: defaults for people, not for tests. */
export const NOTIFY_DEFAULTS = { groupWaitMs: 10_000, groupIntervalMs: 120_000, repeatIntervalMs: 4 * 3600_000, sendResolved: true } as const;

/** The manifest's `notify:` section. */
export const NotifySpec = z.strictObject({
  /** Notifier URLs (HOMEOSTAT_NOTIFY, when set, replaces them). */
  urls: z.array(NotifierUrl).max(20).default([]),
  /** A new group waits this long for more of the same incident before its first notification. */
  groupWaitMs: z.number().int().min(0).max(3_600_000).default(NOTIFY_DEFAULTS.groupWaitMs),
  /** A group already notified waits this long before telling what changed (new items, resolved). */
  groupIntervalMs: z.number().int().min(0).max(86_400_000).default(NOTIFY_DEFAULTS.groupIntervalMs),
  /** Unchanged and still firing: notified again after this long. */
  repeatIntervalMs: z.number().int().min(1000).max(7 * 86_400_000).default(NOTIFY_DEFAULTS.repeatIntervalMs),
  /** Tell when a notified incident closes. */
  sendResolved: z.boolean().default(NOTIFY_DEFAULTS.sendResolved),
});
export type NotifySpec = z.infer<typeof NotifySpec>;
