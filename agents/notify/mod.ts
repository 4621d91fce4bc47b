// The notify agent: incidents that need a human leave the bus here, through the configured
// notifiers (generic webhook, ntfy, Slack-compatible webhook, e-mail). Durable consumers read the
// decisions, actions, incidents and workflow ends; groups and deliveries live in the `notify` KV
// bucket, so restarts and replicas neither lose nor repeat a notification. Without notifiers
// (HOMEOSTAT_NOTIFY or the manifest's notify.urls) it stays idle: no consumers at all.
import { IncidentRecord, kvGet, kvKeys, type Stoppable } from '../../bus/mod.ts';
import { HomeostatError } from '../../core/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import { parseNotifierList, type NotifierTarget } from '../../fleet/notify-targets.ts';
import { agentHandle, every, type AgentHandle, type AgentModule } from '../runtime/agent.ts';
import type { Config } from '../runtime/config.ts';
import { Dispatcher, type NotifierHealth } from './dispatcher.ts';
import type { RetryPolicy, Timing } from './model.ts';
import { NOTIFY_SOURCES, opsFor } from './rules.ts';
import { createSender } from './senders.ts';
import { GroupStore } from './store.ts';
import { SilenceFilter } from './silences.ts';

export { opsFor, NOTIFY_SOURCES } from './rules.ts';
export { applyOp, planFlush, type Notification, type NotifyGroup, type Op, type Timing } from './model.ts';
export { createSender, type Sender } from './senders.ts';
export { sendMail, buildMessage } from './smtp.ts';
export type { NotifierHealth } from './dispatcher.ts';

export interface NotifySettings {
  targets: NotifierTarget[];
  timing: Timing;
  /** Where the notifier URLs came from. */
  from: 'HOMEOSTAT_NOTIFY' | 'manifest';
}

/** Notifiers and grouping: HOMEOSTAT_NOTIFY* over the manifest's notify section over the defaults. */
export function notifySettings(config: Config, fleet: Fleet): NotifySettings {
  const fromEnv = config.HOMEOSTAT_NOTIFY !== undefined;
  const r = parseNotifierList(config.HOMEOSTAT_NOTIFY ?? fleet.notify.urls);
  if ('error' in r) throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', `${fromEnv ? 'HOMEOSTAT_NOTIFY' : 'notify.urls'}: ${r.error}`);
  return {
    targets: r.targets,
    from: fromEnv ? 'HOMEOSTAT_NOTIFY' : 'manifest',
    timing: {
      groupWaitMs: config.HOMEOSTAT_NOTIFY_GROUP_WAIT_MS ?? fleet.notify.groupWaitMs,
      groupIntervalMs: config.HOMEOSTAT_NOTIFY_GROUP_INTERVAL_MS ?? fleet.notify.groupIntervalMs,
      repeatIntervalMs: config.HOMEOSTAT_NOTIFY_REPEAT_INTERVAL_MS ?? fleet.notify.repeatIntervalMs,
      sendResolved: fleet.notify.sendResolved,
    },
  };
}

/** Tests shorten the scan and the retries; production keeps the defaults. */
export interface NotifyOptions {
  /** How often due groups are looked at (default from the grouping timings, 50 ms to 1 s). */
  tickMs?: number;
  retry?: RetryPolicy;
  claimMs?: number;
  /** How often open groups are compared with the incidents in KV (default 1 min). */
  reconcileMs?: number;
}

/** Delivery retries: 2 s doubling up to 5 min, 10 attempts (about 20 minutes in all). */
const RETRY: RetryPolicy = { baseMs: 2000, maxMs: 300_000, attempts: 10 };

export interface NotifyHandle extends AgentHandle {
  /** Each notifier's last outcome (status, doctor). */
  notifiers(): NotifierHealth[];
}

export const agent: AgentModule<NotifyOptions> = {
  name: 'notify',
  async start(ctx): Promise<NotifyHandle> {
    const { bus, fleet, log } = ctx;
    const o = ctx.options;
    const settings = notifySettings(ctx.config, fleet);
    if (!settings.targets.length) {
      log.info('no notifiers configured (HOMEOSTAT_NOTIFY or the manifest\'s notify.urls): nothing to send');
      return Object.assign(agentHandle(async () => undefined), { notifiers: () => [], progress: () => ({ detail: { notifiers: [] } }) });
    }
    const store = new GroupStore(bus.kv.notify, log);
    await store.start();
    const dispatcher = new Dispatcher({
      store, senders: settings.targets.map((t) => createSender(t)), timing: settings.timing, retry: o.retry ?? RETRY,
      fleet: fleet.name, log, metrics: ctx.metrics, claimMs: o.claimMs,
    });
    const silences = new SilenceFilter(bus, log);
    const t = settings.timing;
    const tickMs = o.tickMs ?? Math.min(1000, Math.max(50, Math.floor(Math.min(t.groupWaitMs || 1000, t.groupIntervalMs || 1000) / 4)));
    const ticker = every(tickMs, () => dispatcher.tick(), log);
    const reconciler = every(Math.max(100, o.reconcileMs ?? 60_000), () => dispatcher.reconcile(async (id) => {
      // no record: not an incident of analysis' (a workflow's or an operator's case): leave it
      const inc = await kvGet(bus.kv.incidents, kvKeys.incident(id), IncidentRecord);
      return !inc || inc.value.status === 'open';
    }), log);
    const consumers: Stoppable[] = [];
    try {
      for (const src of NOTIFY_SOURCES) {
        consumers.push(await bus.consume({
          durable: src.durable, filter: src.filter, deliver: 'new',
          handler: async (env) => {
            const ops = await silences.filter(opsFor(env, fleet));
            if (!ops.length) return;
            await dispatcher.apply(ops);
            ticker.now();
          },
        }));
      }
    } catch (e) {
      await Promise.allSettled(consumers.map((c) => c.stop()));
      await ticker.stop();
      await reconciler.stop();
      await store.stop();
      throw e;
    }
    log.info({ notifiers: settings.targets.map((x) => x.name), from: settings.from, ...t }, 'notify ready');
    const handle = agentHandle(async () => {
      await Promise.allSettled(consumers.map((c) => c.stop()));
      await ticker.stop();
      await reconciler.stop();
      await dispatcher.stop();
      await store.stop();
    });
    return Object.assign(handle, {
      notifiers: () => dispatcher.notifiers(),
      // in the heartbeat: `homeostat doctor` and `status` show each notifier's health from it
      progress: () => ({ counters: { ...dispatcher.counts }, detail: { notifiers: dispatcher.notifiers() } }),
    });
  },
};
