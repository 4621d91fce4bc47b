// Notification groups, in the spirit of Alertmanager: items (an approval waiting, a "needs a human"
// verdict, a flapping incident, a workflow's result) gather in a group per incident (per guest
// when there is none); a new group waits `groupWaitMs` for more, a notified group tells what
// changed at most every `groupIntervalMs`, and repeats itself every `repeatIntervalMs` while
// something still fires. Pure: the store (KV, compare-and-set) and the dispatcher do the I/O.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { Severity } from '../../bus/mod.ts';
import { backoffMs, newId, type Backoff } from '../../core/mod.ts';

export const NotifyItem = z.object({
  /** One per thing to tell: `approval:<actionId>`, `decision:<incidentId>`, `incident:<id>`, `workflow:<id>`. */
  key: z.string().min(1).max(200),
  kind: z.enum(['approval', 'decision', 'incident', 'workflow']),
  status: z.enum(['firing', 'resolved']),
  /** Told once (a workflow's result): never repeated, no "resolved" after it. */
  oneShot: z.boolean().default(false),
  /** Part of a notification already sent; a resolved item nobody was told about is dropped quietly. */
  announced: z.boolean().default(false),
  severity: Severity,
  title: z.string().max(300),
  text: z.string().max(2000),
  /** What a person can do about it, e.g. `homeostat approve 01J…`. */
  hint: z.string().max(300).optional(),
  /** How it ended (approved by …, incident resolved). */
  resolution: z.string().max(500).optional(),
  incidentId: z.string().max(80).optional(),
  actionId: z.string().max(80).optional(),
  workflowId: z.string().max(80).optional(),
  vmid: z.number().int().optional(),
  node: z.string().max(64).optional(),
  at: z.string(),
  resolvedAt: z.string().optional(),
});
export type NotifyItem = z.infer<typeof NotifyItem>;
export type NotifyItemInput = z.input<typeof NotifyItem>;

/** What every notifier is given (the generic webhook posts it as it is). */
export const Notification = z.object({
  id: z.string(),
  groupKey: z.string(),
  status: z.enum(['firing', 'resolved']),
  severity: Severity,
  title: z.string(),
  /** Sent again unchanged after repeatIntervalMs. */
  repeat: z.boolean(),
  fleet: z.string(),
  sentAt: z.string(),
  items: z.array(NotifyItem),
});
export type Notification = z.infer<typeof Notification>;

/** One notifier still to be told about one notification. */
export const Pending = z.object({
  notifier: z.string(),
  attempts: z.number().int().min(0),
  /** Next attempt (ms epoch); a claimed attempt pushes it out by the claim time, so replicas never send it twice. */
  nextAt: z.number(),
  lastError: z.string().max(500).optional(),
});
export type Pending = z.infer<typeof Pending>;

export const NotifyGroup = z.object({
  key: z.string(),
  createdAt: z.number(),
  items: z.array(NotifyItem).max(200),
  lastSentAt: z.number().optional(),
  /** Which items (and their status) the last notification told about. */
  sentDigest: z.string().optional(),
  sends: z.number().int().min(0).default(0),
  outbox: z.array(z.object({ notification: Notification, pending: z.array(Pending) })).default([]),
  /** `homeostat ack` on its incident: what changes is still told, nothing is repeated. */
  acknowledged: z.object({ by: z.string(), at: z.string() }).optional(),
});
export type NotifyGroup = z.infer<typeof NotifyGroup>;

export type Op =
  | { op: 'upsert'; group: string; item: NotifyItemInput }
  /** Resolve one item (`key`) or every item of the group. */
  | { op: 'resolve'; group: string; key?: string; resolution: string; at: string }
  /** A person has it: no repeats for this group. */
  | { op: 'ack'; group: string; by: string; at: string };

export interface Timing {
  groupWaitMs: number;
  groupIntervalMs: number;
  repeatIntervalMs: number;
  sendResolved: boolean;
}

const SEVERITY_RANK = { critical: 3, warning: 2, info: 1 } as const;
const MAX_ITEMS = 200;
const MAX_PER_NOTIFICATION = 50;

/** The group after `op`, or undefined when it changes nothing (no write). */
export function applyOp(g: NotifyGroup | undefined, op: Op, now: number): NotifyGroup | undefined {
  if (op.op === 'ack') return g && !g.acknowledged ? { ...g, acknowledged: { by: op.by, at: op.at } } : undefined;
  if (op.op === 'resolve') {
    if (!g) return undefined;
    let changed = false;
    const items = g.items.map((i) => {
      if (i.status !== 'firing' || (op.key !== undefined && i.key !== op.key)) return i;
      changed = true;
      return { ...i, status: 'resolved' as const, resolution: op.resolution.slice(0, 500), resolvedAt: op.at };
    });
    return changed ? { ...g, items } : undefined;
  }
  const item = NotifyItem.parse(op.item);
  // the incident itself is in the group already: the decision's "needs a human" says nothing more
  if (item.kind === 'decision' && item.incidentId && g?.items.some((i) => i.key === `incident:${item.incidentId}`)) return undefined;
  if (!g) return { key: op.group, createdAt: now, items: [item], sends: 0, outbox: [] };
  const cur = g.items.find((i) => i.key === item.key);
  if (cur) {
    if (cur.status === item.status && cur.title === item.title && cur.text === item.text && cur.severity === item.severity) return undefined;
    return { ...g, items: g.items.map((i) => (i.key === item.key ? { ...item, announced: cur.announced } : i)) };
  }
  // a long-lived group keeps its newest items
  return { ...g, items: [...g.items, item].slice(-MAX_ITEMS) };
}

/** Items a notification would show: all firing ones, and resolved ones people were told about. */
const visibleOf = (g: NotifyGroup) => g.items.filter((i) => i.status === 'firing' || i.announced);

export function digest(items: readonly NotifyItem[]): string {
  const h = createHash('sha256');
  for (const k of items.map((i) => `${i.key}=${i.status}`).sort()) h.update(`${k}\n`);
  return h.digest('base64url').slice(0, 22);
}

function notificationOf(g: NotifyGroup, visible: NotifyItem[], repeat: boolean, fleet: string, now: number): Notification {
  const firing = visible.filter((i) => i.status === 'firing');
  const shown = [...firing, ...visible.filter((i) => i.status === 'resolved')].slice(0, MAX_PER_NOTIFICATION);
  const lead = firing.length ? firing : shown;
  const top = lead.reduce((a, b) => (SEVERITY_RANK[b.severity] > SEVERITY_RANK[a.severity] ? b : a), lead[0]);
  const more = lead.length > 1 ? ` (+${lead.length - 1} more)` : '';
  return {
    id: newId(now), groupKey: g.key, status: firing.length ? 'firing' : 'resolved', severity: top.severity,
    title: `${top.title}${more}`.slice(0, 300), repeat, fleet, sentAt: new Date(now).toISOString(), items: shown,
  };
}

export type Flush = { group: NotifyGroup | null; sent?: Notification };

/** Is anything due for this group at `now`: a notification, or deleting it? Undefined: nothing. */
export function planFlush(g: NotifyGroup, now: number, t: Timing, notifiers: readonly string[], fleet: string): Flush | undefined {
  const visible = visibleOf(g);
  const firing = visible.filter((i) => i.status === 'firing');
  let repeat = false;
  if (g.lastSentAt === undefined) {
    if (!firing.length) return g.outbox.length ? undefined : { group: null };
    if (now < g.createdAt + t.groupWaitMs) return undefined;
  } else if (digest(visible) !== g.sentDigest) {
    if (now < g.lastSentAt + t.groupIntervalMs) return undefined;
    if (!firing.length && !t.sendResolved) return { group: { ...g, items: [], sentDigest: digest([]) } };
  } else if (!g.acknowledged && firing.some((i) => !i.oneShot) && now >= g.lastSentAt + t.repeatIntervalMs) {
    repeat = true;
  } else {
    return !visible.length && !g.outbox.length ? { group: null } : undefined;
  }
  const sent = notificationOf(g, visible, repeat, fleet, now);
  const told = new Set(visible.map((i) => i.key));
  // told once: one-shot items and resolved ones leave the group; the rest are now announced
  const items = g.items
    .filter((i) => !(told.has(i.key) && (i.oneShot || i.status === 'resolved')) && !(i.status === 'resolved' && !i.announced))
    .map((i) => (told.has(i.key) ? { ...i, announced: true } : i));
  const pending = notifiers.map((notifier) => ({ notifier, attempts: 0, nextAt: now }));
  return {
    group: { ...g, items, lastSentAt: now, sentDigest: digest(visibleOf({ ...g, items })), sends: g.sends + 1, outbox: pending.length ? [...g.outbox, { notification: sent, pending }] : g.outbox },
    sent,
  };
}

/** Deliveries whose time has come: (notification id, notifier). */
export function dueDeliveries(g: NotifyGroup, now: number): { id: string; notifier: string; nextAt: number }[] {
  return g.outbox.flatMap((o) => o.pending.filter((p) => p.nextAt <= now).map((p) => ({ id: o.notification.id, notifier: p.notifier, nextAt: p.nextAt })));
}

function mapPending(g: NotifyGroup, id: string, notifier: string, fn: (p: Pending) => Pending | null): NotifyGroup | undefined {
  let hit = false;
  const outbox = g.outbox.map((o) => {
    if (o.notification.id !== id) return o;
    return {
      ...o,
      pending: o.pending.flatMap((p) => {
        if (p.notifier !== notifier) return [p];
        hit = true;
        const next = fn(p);
        return next ? [next] : [];
      }),
    };
  }).filter((o) => o.pending.length > 0);
  return hit ? { ...g, outbox } : undefined;
}

/** Take one delivery for an attempt: only when it is due, so two replicas never both send it. */
export function claimDelivery(g: NotifyGroup, id: string, notifier: string, now: number, claimMs: number): NotifyGroup | undefined {
  const o = g.outbox.find((x) => x.notification.id === id);
  const p = o?.pending.find((x) => x.notifier === notifier);
  if (!p || p.nextAt > now) return undefined;
  return mapPending(g, id, notifier, (x) => ({ ...x, attempts: x.attempts + 1, nextAt: now + claimMs }));
}

export interface RetryPolicy extends Backoff {
  /** Attempts before a delivery is given up (logged as an error). */
  attempts: number;
}

/** After an attempt: delivered (gone), failed (again after a backoff) or given up (gone). */
export function settleDelivery(g: NotifyGroup, id: string, notifier: string, now: number, error: string | undefined, retry: RetryPolicy): { group: NotifyGroup | undefined; gaveUp: boolean } {
  let gaveUp = false;
  const group = mapPending(g, id, notifier, (p) => {
    if (error === undefined) return null;
    if (p.attempts >= retry.attempts) {
      gaveUp = true;
      return null;
    }
    return { ...p, nextAt: now + backoffMs(p.attempts, retry), lastError: error.slice(0, 500) };
  });
  return { group, gaveUp };
}
