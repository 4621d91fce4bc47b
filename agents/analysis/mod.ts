// The analysis agent: guest/node/api events (durable consumer), Alertmanager alerts (durable
// consumer), metric samples (core subscription) and desired-state changes (KV watch) go into the
// Analyzer; alerts and incidents come out through one ordered outbox. After a restart its memory
// is rebuilt from the fleet-state and incidents KV before the consumers resume.
import { decode, DesiredState, HeartbeatRecord, kvList, orderedConsumer, patterns, sentBy, type Action, type ActionPhase, type AgentEvent, type Alert, type ApiEvent, type Envelope, type GuestEvent, type MetricSample, type NodeEvent, type Stoppable } from '../../bus/mod.ts';
import { backoffMs, retry, sleep } from '../../core/mod.ts';
import { agentHandle, every, type AgentHandle, type AgentModule } from '../runtime/agent.ts';
import { Analyzer } from './analyzer.ts';
import { analysisOptions, type AnalysisOptions } from './options.ts';
import { LatencyLog } from './latency.ts';
import { IncidentMetrics } from './metrics.ts';
import { Outbox } from './outbox.ts';
import { serveIncidentCommands } from './commands.ts';
import { DESIRED_PREFIX, rebuild, reconcileWithKv, vmidOfDesiredKey } from './rebuild.ts';

export { FleetStateWarmer, type FleetStateSnapshot } from './rebuild.ts';

export { Analyzer, type Output } from './analyzer.ts';
export { tuningFor, type AnalysisOptions, type Tuning } from './options.ts';

export interface AnalysisHandle extends AgentHandle {
  /** The live analyzer (read-only use: tests and status). */
  analyzer: Analyzer;
  /** Durable consumer names, so tests can delete them. */
  durables: string[];
  /** Event received → its incident messages stored, inside this agent (recent samples). */
  latency(): { n: number; p50Ms: number; p99Ms: number; maxMs: number };
}

const enc = new TextDecoder();
/** Event ids remembered from the fast path (a burst of a 5,000-guest fleet, with room). */
const APPLIED_MAX = 20_000;

export const agent: AgentModule<AnalysisOptions> = {
  name: 'analysis',
  async start(ctx): Promise<AnalysisHandle> {
    const { tuning, durablePrefix, hold, warm } = analysisOptions(ctx);
    const log = ctx.log;
    const bus = ctx.bus;
    const analyzer = new Analyzer(ctx.fleet, tuning);
    const metrics = new IncidentMetrics(ctx.metrics, () => analyzer.book.open.values());
    const outbox = new Outbox(bus, log, (out, seenAt) => metrics.record(out, seenAt), hold);
    const latency = new LatencyLog();
    try {
      // a cluster electing a new leader answers again within seconds: a model built from an
      // unreadable KV would be wrong, so ask a few times before starting empty. bench/scale, its
      // nats-server leading fleet-state SIGKILLed: the reads of a replica taking over failed for
      // 45–60 s, and one started empty after 8 tries (~45 s) never opened the crashes' incidents;
      // 20 tries (~2 min) start it late instead (a crash then heals late, not never).
      const r = await retry(() => rebuild(bus, analyzer, warm), { attempts: 20, baseMs: 100, maxMs: 1000 });
      log.info(r, 'analysis memory rebuilt from KV');
    } catch (e) {
      log.warn({ err: (e as Error).message }, 'could not read KV; starting with empty memory');
    }
    metrics.gauge();
    await outbox.send(analyzer.reconcile());

    const stoppables: Stoppable[] = [];
    // nats.js ends a KV watch by itself when it cannot re-create its consumer (a long NATS outage):
    // watch again, with backoff; the periodic reconcile covers what changed in between
    const watchDesired = () => orderedConsumer(() => bus.kv.fleetState.watch({ key: `${DESIRED_PREFIX}>`, include: 'updates' }), 'a watch of desired states');
    let watch = await watchDesired();
    const unwatched = new AbortController();
    const watching = (async () => {
      for (let failures = 0; ; ) {
        try {
          for await (const e of watch) {
            failures = 0;
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
            await outbox.offer(analyzer.onDesired(vmid, desired));
          }
        } catch (e) {
          log.warn({ err: (e as Error).message }, 'desired-state watch failed');
        }
        if (unwatched.signal.aborted) return;
        log.warn('desired-state watch ended; watching again');
        for (;;) {
          await sleep(backoffMs(++failures, { baseMs: 500, maxMs: 5000 }), unwatched.signal);
          try {
            watch = await watchDesired();
            break;
          } catch (e) {
            log.warn({ err: (e as Error).message, failures }, 'could not watch desired state; retrying');
          }
        }
      }
    })().catch(() => undefined); // only the stop's abort ends it

    type AnyEvent = GuestEvent | NodeEvent | ApiEvent | AgentEvent;
    const onEvent = (env: Envelope<AnyEvent>, subject: string) => {
      const t0 = performance.now();
      const out = subject.startsWith('fleet.events.guest.')
        ? analyzer.onGuestEvent(env as Envelope<GuestEvent>)
        : subject.startsWith('fleet.events.node.')
          ? analyzer.onNodeEvent(env as Envelope<NodeEvent>)
          : subject.startsWith('fleet.events.agent.')
            ? analyzer.onAgentEvent(env as Envelope<AgentEvent>)
            : analyzer.onApiEvent(env as Envelope<ApiEvent>);
      const written = outbox.send(out, Date.parse(env.ts));
      if (out.some((o) => o.kind === 'incident')) void written.then(() => latency.record(performance.now() - t0));
      // above the high-water mark the durable consumer waits until half of it is written
      return outbox.full ? outbox.drained() : undefined;
    };
    // Two ways in for the same events: core NATS is the fast path (no wait for the stream), the
    // durable consumer the sure one (restarts, gaps). The analyzer is idempotent on a report it
    // already applied and ignores older ones, so whichever copy comes second changes nothing.
    // Invalid messages are skipped here; the consumer dead-letters them.
    // Ids the fast path applied: the consumer acks those without decoding them again (half of
    // analysis' decoding under a burst went to the second copy). Bounded: the oldest go first.
    // Above the outbox's high-water mark the fast path stands aside: the durable consumer brings
    // the same events with backpressure. (Applied here regardless, a 5,000-guest burst queued all
    // ~15,000 of its messages at once: analysis' RSS rose by ~50 MB.)
    const applied = new Set<string>();
    const fast = bus.nc.subscribe(patterns.events, {
      callback: (_e, m) => {
        if (outbox.full) return;
        const r = decode<AnyEvent>(m.subject, m.data);
        if (!r.ok) return;
        void onEvent(r.env, m.subject);
        // by the envelope id, without parsing the headers here: a copy published under another
        // dedup id is not found by the consumer's skip and is decoded again (harmless), and its
        // entry here ages out
        applied.add(r.env.id);
        if (applied.size > APPLIED_MAX) applied.delete(applied.values().next().value!);
      },
    });
    stoppables.push({ stop: async () => fast.unsubscribe() });
    const durables = [`${durablePrefix}-events`, `${durablePrefix}-alerts`];
    stoppables.push(await bus.consume<AnyEvent>({
      durable: durables[0],
      filter: patterns.events,
      skip: (m) => {
        const id = m.headers?.get('Nats-Msg-Id');
        return id !== undefined && applied.delete(id);
      },
      handler: async (env, msg) => {
        await onEvent(env, msg.subject);
      },
    }));
    stoppables.push(await bus.consume<Alert>({
      durable: durables[1],
      filter: patterns.alerts,
      // analysis' own alerts (GuestDown, NodeDown…) come back here: only Alertmanager's matter
      skip: (m) => sentBy(m.data, bus.source),
      handler: (env) => outbox.offer(analyzer.onExternalAlert(env)),
    }));
    // homeostat's own actions: the state changes they cause are matched to them, not taken for
    // failures. Core NATS is enough: the approval is published before the action runs, and
    // sensing can only see its effect a poll later.
    stoppables.push(bus.subscribe<Action>(patterns.actions, async (env, subject) => {
      const phase = subject.slice(subject.lastIndexOf('.') + 1) as ActionPhase;
      await outbox.offer(analyzer.onAction(env, phase));
    }));
    // A round of samples arrives as one burst: yield now and then so incident messages are not
    // held back behind thousands of samples.
    let samples = 0;
    stoppables.push(bus.subscribe<MetricSample>(patterns.metrics, async (env) => {
      await outbox.offer(analyzer.onMetric(env.data));
      if (++samples % 50 === 0) await new Promise<void>((r) => setImmediate(r));
    }));
    stoppables.push(...serveIncidentCommands(bus, analyzer, outbox));
    const ticker = every(tuning.tickMs, () => outbox.send(analyzer.tick()), log);
    // the other agents' heartbeats: one gone quiet is an incident of homeostat itself
    const selfWatch = every(tuning.heartbeatCheckMs, async () => {
      await outbox.offer(analyzer.onHeartbeats(await kvList(bus.kv.agents, '', HeartbeatRecord)));
    }, log);
    const reconcile = async () => outbox.offer(await reconcileWithKv(bus, analyzer));
    const reconciler = every(tuning.reconcileMs, reconcile, log);
    stoppables.push(bus.onReconnect(() => {
      reconcile().catch((e: unknown) => log.warn({ err: (e as Error).message }, 'reconcile after reconnect failed; the periodic one follows'));
    }));
    // started from a standby's copy of fleet-state: what changed since it was read, now
    if (warm) reconcile().catch((e: unknown) => log.warn({ err: (e as Error).message }, 'reconcile after a warm start failed; the periodic one follows'));
    log.info({ durables, groupWindowMs: tuning.groupWindowMs, symptomGraceMs: tuning.symptomGraceMs }, 'analysis started');

    const h = agentHandle(async () => {
      await ticker.stop();
      await selfWatch.stop();
      await reconciler.stop();
      unwatched.abort();
      watch.stop();
      await Promise.allSettled(stoppables.map((s) => s.stop()));
      await watching;
      outbox.abandon();
      await outbox.idle();
    });
    return Object.assign(h, { analyzer, durables, latency: () => latency.stats() });
  },
};

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
