// A sender per notifier target. Each attempt is one HTTP POST or one SMTP session with a timeout;
// retrying is the dispatcher's (with backoff, state in KV). Errors say what went wrong without
// the URL: the target's name is what gets logged.
import type { NotifierTarget } from '../../fleet/notify-targets.ts';
import type { Notification } from './model.ts';
import { headerValue, headline, ntfyHeaders, plainText, slackBody, webhookBody } from './render.ts';
import { sendMail } from './smtp.ts';

export interface Sender {
  name: string;
  kind: NotifierTarget['kind'];
  send(n: Notification): Promise<void>;
}

export class DeliveryError extends Error {}

async function post(url: string, headers: Record<string, string>, body: string, timeoutMs: number): Promise<void> {
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
  } catch (e) {
    const err = e as Error & { cause?: { code?: string; message?: string } };
    const why = err.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : err.cause?.code ?? err.cause?.message ?? err.message;
    throw new DeliveryError(`POST failed: ${why}`);
  }
  const text = await res.text().catch(() => '');
  if (!res.ok) throw new DeliveryError(`HTTP ${res.status}${text ? `: ${text.replace(/\s+/g, ' ').slice(0, 200)}` : ''}`);
}

export function createSender(t: NotifierTarget, o: { timeoutMs?: number; clientName?: string } = {}): Sender {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const auth = (a?: string): Record<string, string> => (a ? { authorization: a } : {});
  switch (t.kind) {
    case 'webhook':
      return { name: t.name, kind: t.kind, send: (n) => post(t.url, { 'content-type': 'application/json', ...auth(t.authorization) }, webhookBody(n), timeoutMs) };
    case 'slack':
      return { name: t.name, kind: t.kind, send: (n) => post(t.url, { 'content-type': 'application/json' }, slackBody(n), timeoutMs) };
    case 'ntfy':
      return {
        name: t.name, kind: t.kind, send: (n) => {
          const h = ntfyHeaders(n);
          return post(t.url, { 'content-type': 'text/plain; charset=utf-8', title: headerValue(headline(n)), priority: h.priority, tags: h.tags, ...auth(t.authorization) }, plainText(n), timeoutMs);
        },
      };
    case 'smtp':
      return {
        name: t.name, kind: t.kind,
        send: (n) => sendMail(t, { subject: `[homeostat] ${headline(n)}`, text: plainText(n), headers: { 'X-Homeostat-Group': n.groupKey, 'X-Homeostat-Status': n.status } }, { timeoutMs: o.timeoutMs ?? 20_000, clientName: o.clientName }),
      };
  }
}
