// Turns group operations into KV writes, and due groups into notifications and deliveries. A
// delivery runs in the background (never holding up the scan or the consumers), is claimed in KV
// first (so one replica sends it), and on failure waits a backoff before the next attempt; after
// the last one it is given up, with an error naming the notifier (its name, never its URL).
import type { Logger } from '../../core/mod.ts';
import type { Metrics } from '../runtime/metrics.ts';
import { applyOp, claimDelivery, dueDeliveries, planFlush, settleDelivery, type Notification, type NotifyGroup, type Op, type RetryPolicy, type Timing } from './model.ts';
import type { Sender } from './senders.ts';
import { groupKvKey, type GroupStore } from './store.ts';

/** How long a delivery due on a notifier this process lacks waits for a process that has it. */
export const FOREIGN_NOTIFIER_GRACE_MS = 10 * 60_000;

export interface DispatcherOptions {
  store: GroupStore;
  senders: readonly Sender[];
  timing: Timing;
  retry: RetryPolicy;
  fleet: string;
  log: Logger;
  metrics?: Metrics;
  /** How long a claimed attempt keeps others off it (longer than a sender's timeout). */
  claimMs?: number;
}

export interface NotifierHealth {
  name: string;
  kind: string;
  ok: boolean | null;
  lastOkAt?: string;
  lastError?: string;
  lastErrorAt?: string;
}

export class Dispatcher {
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly senders: Map<string, Sender>;
  private readonly health = new Map<string, NotifierHealth>();
  /** Delivery attempts by outcome, for the heartbeat. */
  readonly counts = { sent: 0, failed: 0, gaveUp: 0 };
  private stopped = false;

  constructor(private readonly o: DispatcherOptions) {
    this.senders = new Map(o.senders.map((s) => [s.name, s]));
    for (const s of o.senders) this.health.set(s.name, { name: s.name, kind: s.kind, ok: null });
  }

  /** Apply what a message means (consumer side). */
  async apply(ops: readonly Op[], now = Date.now()): Promise<void> {
    for (const op of ops) {
      const key = groupKvKey(op.group);
      // resolving what was never notified (most approvals end this way): no read at all
      if ((op.op === 'resolve' || op.op === 'ack') && !this.o.store.get(key)) continue;
      const written = await this.o.store.mutate(key, (g) => applyOp(g, op, now));
      if (written) this.o.log.debug({ group: op.group, op: op.op }, 'notification group changed');
    }
  }

  /** One scan: plan what is due, start deliveries that are due. */
  async tick(now = Date.now()): Promise<void> {
    const names = [...this.senders.keys()];
    for (const [key, cached] of this.o.store.groups()) {
      if (this.stopped) return;
      let g: NotifyGroup | undefined = cached;
      if (planFlush(cached, now, this.o.timing, names, this.o.fleet)) {
        let sent: Notification | undefined;
        const r = await this.o.store.mutate(key, (cur) => {
          sent = undefined;
          if (!cur) return undefined;
          const plan = planFlush(cur, now, this.o.timing, names, this.o.fleet);
          sent = plan?.sent;
          return plan?.group;
        });
        g = r ?? undefined;
        if (sent && r) this.o.log.info({ group: sent.groupKey, status: sent.status, repeat: sent.repeat, items: sent.items.length, notifiers: names }, 'notification planned');
      }
      if (!g) continue;
      for (const d of dueDeliveries(g, now)) {
        // a notifier this process does not have is another process's to send (a replica or a stack
        // configured differently on the same bus); only one overdue for long, whose process is gone
        // or was reconfigured, is taken here, to be given up (not retried)
        if (!this.senders.has(d.notifier) && now - d.nextAt < FOREIGN_NOTIFIER_GRACE_MS) continue;
        this.deliver(key, d.id, d.notifier);
      }
    }
  }

  private deliver(key: string, id: string, notifier: string): void {
    const flight = `${id}|${notifier}`;
    if (this.inflight.has(flight) || this.stopped) return;
    const p = this.attempt(key, id, notifier)
      .catch((e: unknown) => this.o.log.error({ notifier, err: (e as Error).message }, 'notification delivery bookkeeping failed'))
      .finally(() => this.inflight.delete(flight));
    this.inflight.set(flight, p);
  }

  private async attempt(key: string, id: string, notifier: string): Promise<void> {
    const sender = this.senders.get(notifier);
    const claimMs = this.o.claimMs ?? 60_000;
    let notification: Notification | undefined;
    let attempt = 0;
    const claimed = await this.o.store.mutate(key, (g) => {
      notification = undefined;
      if (!g) return undefined;
      const next = claimDelivery(g, id, notifier, Date.now(), claimMs);
      if (next) {
        notification = next.outbox.find((o) => o.notification.id === id)?.notification;
        attempt = next.outbox.find((o) => o.notification.id === id)?.pending.find((p) => p.notifier === notifier)?.attempts ?? 0;
      }
      return next;
    });
    if (!claimed || !notification) return;
    let error: string | undefined;
    if (!sender) error = 'no such notifier in this process\'s configuration';
    else {
      try {
        await sender.send(notification);
      } catch (e) {
        error = (e as Error).message;
      }
    }
    this.record(notifier, error);
    let gaveUp = false;
    await this.o.store.mutate(key, (g) => {
      if (!g) return undefined;
      // a notifier no longer configured is not retried: it would fail the same way every time
      const r = settleDelivery(g, id, notifier, Date.now(), error, sender ? this.o.retry : { ...this.o.retry, attempts: 0 });
      gaveUp = r.gaveUp;
      return r.group;
    });
    const kind = sender?.kind ?? 'unknown';
    this.counts[error === undefined ? 'sent' : gaveUp ? 'gaveUp' : 'failed']++;
    if (error === undefined) {
      this.o.metrics?.notifications.inc({ notifier: kind, outcome: 'sent' });
      this.o.log.info({ notifier, group: notification.groupKey, status: notification.status, attempt }, 'notification sent');
    } else if (gaveUp) {
      this.o.metrics?.notifications.inc({ notifier: kind, outcome: 'gave_up' });
      this.o.log.error({ notifier, group: notification.groupKey, attempt, err: error }, 'notification given up after its last attempt');
    } else {
      this.o.metrics?.notifications.inc({ notifier: kind, outcome: 'failed' });
      this.o.log.warn({ notifier, group: notification.groupKey, attempt, err: error }, 'notification delivery failed; will retry');
    }
  }

  private record(name: string, error: string | undefined): void {
    const h = this.health.get(name);
    if (!h) return;
    const at = new Date().toISOString();
    this.health.set(name, error === undefined ? { ...h, ok: true, lastOkAt: at } : { ...h, ok: false, lastError: error.slice(0, 300), lastErrorAt: at });
  }

  /** Each notifier: ok (last delivery went through), failing, or not used yet (null). */
  notifiers(): NotifierHealth[] {
    return [...this.health.values()];
  }

  /** Let deliveries in flight finish, for a moment: one cut short is claimed in KV and tried
   *  again after its claim time by whichever replica runs then. */
  async stop(graceMs = 2000): Promise<void> {
    this.stopped = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.inflight.values()]), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
  }

  /** Level-triggered: a group whose incident is closed (its IncidentResolved missed while no
   *  replica ran, or lost) is resolved, so it does not repeat forever. */
  async reconcile(isOpen: (incidentId: string) => Promise<boolean>): Promise<void> {
    for (const [, g] of this.o.store.groups()) {
      if (this.stopped) return;
      const id = /^incident:(.+)$/.exec(g.key)?.[1];
      if (!id || !g.items.some((i) => i.status === 'firing') || (await isOpen(id))) continue;
      await this.apply([{ op: 'resolve', group: g.key, resolution: `incident ${id} resolved`, at: new Date().toISOString() }]);
    }
  }
}
