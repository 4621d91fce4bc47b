// One notification, written for each kind of receiver: plain text (ntfy, e-mail), Slack blocks,
// and the generic webhook's JSON (the notification itself, versioned).
import type { Notification, NotifyItem } from './model.ts';

const MARK = { firing: 'FIRING', resolved: 'RESOLVED' } as const;

/** `[FIRING] title` / `[RESOLVED] title` (repeats say so). */
export function headline(n: Notification): string {
  return `[${MARK[n.status]}${n.repeat ? ', still' : ''}] ${n.title}`;
}

function itemLine(i: NotifyItem): string {
  const state = i.status === 'resolved' ? `resolved${i.resolution ? ` (${i.resolution})` : ''}` : i.severity;
  return `- ${i.title} [${state}]\n  ${i.text}${i.hint && i.status === 'firing' ? `\n  → ${i.hint}` : ''}`;
}

/** The body for ntfy and e-mail. */
export function plainText(n: Notification): string {
  return [
    ...n.items.map(itemLine),
    '',
    `homeostat · fleet ${n.fleet} · ${n.groupKey} · ${n.sentAt}`,
  ].join('\n');
}

/** The generic webhook's body: the notification, with a version so receivers can evolve. */
export function webhookBody(n: Notification): string {
  return JSON.stringify({ version: 1, source: 'homeostat', ...n, headline: headline(n), text: plainText(n) });
}

/** Slack's mrkdwn: &, < and > are its control characters. */
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Incoming-webhook payload: `text` (notifications, and clients without blocks) and `blocks`. */
export function slackBody(n: Notification): string {
  const icon = n.status === 'resolved' ? ':white_check_mark:' : n.severity === 'critical' ? ':rotating_light:' : n.severity === 'warning' ? ':warning:' : ':information_source:';
  const items = n.items.map((i) => {
    const state = i.status === 'resolved' ? `_resolved${i.resolution ? `: ${esc(i.resolution)}` : ''}_` : `*${i.severity}*`;
    return `• *${esc(i.title)}* ${state}\n${esc(i.text)}${i.hint && i.status === 'firing' ? `\n\`${esc(i.hint)}\`` : ''}`;
  }).join('\n\n');
  return JSON.stringify({
    text: `${icon} ${esc(headline(n))}`,
    blocks: [
      { type: 'header', text: { type: 'plain_text', text: headline(n).slice(0, 150) } },
      { type: 'section', text: { type: 'mrkdwn', text: items.slice(0, 2900) || '_nothing left open_' } },
      { type: 'context', elements: [{ type: 'mrkdwn', text: esc(`homeostat · fleet ${n.fleet} · ${n.groupKey}`) }] },
    ],
  });
}

/** ntfy's Priority (1-5) and Tags (emoji short codes) for a notification. */
export function ntfyHeaders(n: Notification): { priority: string; tags: string } {
  if (n.status === 'resolved') return { priority: '2', tags: 'white_check_mark,homeostat' };
  const p = { critical: ['5', 'rotating_light'], warning: ['4', 'warning'], info: ['3', 'information_source'] }[n.severity];
  return { priority: p[0], tags: `${p[1]},homeostat` };
}

/** A header value that is safe on the wire: one line, and RFC 2047 (UTF-8, base64) when not ASCII.
 *  Guest names and alert text are data: they never get to add a header line. */
export function headerValue(s: string): string {
  const line = s.replace(/[\r\n\t]+/g, ' ').trim();
  return /^[\x20-\x7e]*$/.test(line) ? line : `=?UTF-8?B?${Buffer.from(line, 'utf8').toString('base64')}?=`;
}
