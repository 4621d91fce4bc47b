// The analysis agent: guest/node/api events (durable consumer), Alertmanager alerts (durable
// consumer), metric samples (core subscription) and desired-state changes (KV watch) go into the
// Analyzer; alerts and incidents come out through one ordered outbox. After a restart its memory
// is rebuilt from the fleet-state and incidents KV before the consumers resume.
import { DesiredState, patterns, type Alert, type ApiEvent, type Envelope, type GuestEvent, type MetricSample, type NodeEvent, type Stoppable } from '../../bus/mod.ts';
import { agentHandle, every, type AgentHandle, type AgentModule } from '../runtime/agent.ts';
import { Analyzer } from './analyzer.ts';
import { analysisOptions } from './options.ts';
import { Outbox } from './outbox.ts';
import { DESIRED_PREFIX, rebuild, vmidOfDesiredKey } from './rebuild.ts';

export { Analyzer, type Output } from './analyzer.ts';
export { tuningFor, type Tuning } from './options.ts';

export interface AnalysisHandle extends AgentHandle {
  /** The live analyzer (read-only use: tests and status). */
  analyzer: Analyzer;
  /** Durable consumer names, so tests can delete them. */
  durables: string[];
}

const enc = new TextDecoder();

export const agent: AgentModule = {
  name: 'analysis',
  async start(ctx): Promise<AnalysisHandle> {
    const { tuning, durablePrefix } = analysisOptions(ctx);
    const log = ctx.log;
    const bus = ctx.bus;
    const analyzer = new Analyzer(ctx.fleet, tuning);
    const outbox = new Outbox(bus, log);
    try {
      const r = await rebuild(bus, analyzer);
      log.info(r, 'analysis memory rebuilt from KV');
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'could not read KV; starting with empty memory');
    }
    await outbox.send(analyzer.reconcile()).catch(() => undefined);

    const stoppables: Stoppable[] = [];
    const watch = await bus.kv.fleetState.watch({ key: `${DESIRED_PREFIX}>`, include: 'updates' });
    const watching = (async () => {
      for await (const e of watch) {
        const vmid = vmidOfDesiredKey(e.key);
        if (vmid === undefined) continue;
        let desired: DesiredState | undefined;
        if (e.operation === 'PUT') {
          const parsed = DesiredState.safeParse(safeJson(enc.decode(e.value)));
          if (!parsed.success) {
            log.warn({ key: e.key }, 'invalid desired state in KV ignored');
            continue;
          }
          desired = parsed.data;
        }
        await outbox.send(analyzer.onDesired(vmid, desired)).catch(() => undefined);
      }
    })();

    const durables = [`${durablePrefix}-events`, `${durablePrefix}-alerts`];
    stoppables.push(await bus.consume<GuestEvent | NodeEvent | ApiEvent>({
      durable: durables[0],
      filter: patterns.events,
      handler: async (env, msg) => {
        const s = msg.subject;
        const out = s.startsWith('fleet.events.guest.')
          ? analyzer.onGuestEvent(env as Envelope<GuestEvent>)
          : s.startsWith('fleet.events.node.')
            ? analyzer.onNodeEvent(env as Envelope<NodeEvent>)
            : analyzer.onApiEvent(env as Envelope<ApiEvent>);
        await outbox.send(out);
      },
    }));
    stoppables.push(await bus.consume<Alert>({
      durable: durables[1],
      filter: patterns.alerts,
      handler: async (env) => outbox.send(analyzer.onExternalAlert(env)),
    }));
    stoppables.push(bus.subscribe<MetricSample>(patterns.metrics, (env) => outbox.send(analyzer.onMetric(env.data))));
    const ticker = every(tuning.tickMs, () => outbox.send(analyzer.tick()), log);
    log.info({ durables, groupWindowMs: tuning.groupWindowMs, symptomGraceMs: tuning.symptomGraceMs }, 'analysis started');

    const h = agentHandle(async () => {
      await ticker.stop();
      watch.stop();
      await Promise.allSettled(stoppables.map((s) => s.stop()));
      await watching.catch(() => undefined);
      await outbox.idle();
    });
    return Object.assign(h, { analyzer, durables });
  },
};

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
