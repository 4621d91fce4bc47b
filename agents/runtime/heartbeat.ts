// Every agent instance says it is alive, what it has done and whether it is stuck: a record in
// the agents bucket each interval (read by `homeostat doctor` and by analysis, which raises an
// incident for an agent gone quiet), and AgentStalled / AgentRecovered on fleet.events.agent.<agent>
// when it stops (or resumes) making progress. Started for every agent by the stack (cli/stack.ts).
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { type Logger } from '../../core/mod.ts';
import { kvKeys, kvPut, subjects, type AgentEvent, type Bus, type HeartbeatRecord } from '../../bus/mod.ts';
import type { AgentProgress } from './agent.ts';

export interface HeartbeatSettings {
  /** How often each agent writes its heartbeat (default 5 s). */
  heartbeatMs?: number;
  /** No progress for this long while work waits = stalled (default 2 min). */
  stallMs?: number;
}

export interface HeartbeatOptions extends HeartbeatSettings {
  bus: Bus;
  agent: string;
  fleet: string;
  log: Logger;
  progress?: (now: number, stallMs: number) => AgentProgress;
}

export interface Heartbeat {
  readonly instance: string;
  /** Write a heartbeat now (tests, and right after start). */
  beat(): Promise<void>;
  /** Mark this instance stopped and stop beating. */
  stop(): Promise<void>;
}

interface ConsumerWatch {
  sig: string;
  since: number;
}

export function startHeartbeat(o: HeartbeatOptions): Heartbeat {
  const heartbeatMs = Math.max(50, o.heartbeatMs ?? 5000);
  const stallMs = Math.max(100, o.stallMs ?? 120_000);
  const instance = `${hostname()}-${process.pid}-${randomBytes(2).toString('hex')}`;
  const key = kvKeys.heartbeat(o.agent, instance);
  const startedAt = new Date().toISOString();
  const watches = new Map<string, ConsumerWatch>();
  let stalled: HeartbeatRecord['stalled'];
  let stopped = false;
  let running: Promise<void> = Promise.resolve();

  const consumers = async (now: number) => {
    const out: HeartbeatRecord['consumers'] = [];
    let stall: { reason: string; since: number } | undefined;
    for (const [durable, d] of o.bus.durables) {
      const info = await o.bus.jsm.consumers.info(d.stream, durable).catch(() => undefined);
      if (!info) continue;
      out.push({ stream: d.stream, durable, pending: info.num_pending, ackPending: info.num_ack_pending });
      // progress as the server sees it (true across replicas of one durable)
      const sig = `${info.delivered.consumer_seq}:${info.ack_floor.consumer_seq}:${info.num_ack_pending}`;
      const w = watches.get(durable);
      if (!w || w.sig !== sig || info.num_pending + info.num_ack_pending === 0) watches.set(durable, { sig, since: now });
      else if (now - w.since >= stallMs && !stall) {
        stall = { reason: `consumer ${durable}: ${info.num_pending + info.num_ack_pending} message(s) waiting, none handled for ${Math.round((now - w.since) / 1000)} s`, since: w.since };
      }
    }
    return { out, stall };
  };

  const announce = async (type: 'AgentStalled' | 'AgentRecovered', data: AgentEvent) => {
    await o.bus.publish(subjects.agentEvent(o.agent), type, data, { retryForMs: heartbeatMs }).catch((e: unknown) =>
      o.log.warn({ err: (e as Error).message }, `could not publish ${type}`));
  };

  const once = async (status: HeartbeatRecord['status']) => {
    const now = Date.now();
    const p = o.progress?.(now, stallMs) ?? {};
    const c = status === 'running' ? await consumers(now) : { out: [], stall: undefined };
    const counters: Record<string, number> = { ...(p.counters ?? {}) };
    for (const [durable, d] of o.bus.durables) counters[`acked.${durable}`] = d.acked;
    const next: HeartbeatRecord['stalled'] = p.stalled
      ? { ...p.stalled, since: stalled?.kind === p.stalled.kind ? stalled.since : new Date(now).toISOString() }
      : c.stall ? { kind: 'consumer', reason: c.stall.reason, since: new Date(c.stall.since).toISOString() } : undefined;
    if (status === 'running' && next && (!stalled || stalled.kind !== next.kind)) {
      o.log.warn({ kind: next.kind, reason: next.reason }, 'agent stalled: not making progress');
      await announce('AgentStalled', { agent: o.agent, instance, ...next });
    } else if (status === 'running' && !next && stalled) {
      o.log.info({ kind: stalled.kind }, 'agent making progress again');
      await announce('AgentRecovered', { agent: o.agent, instance, kind: stalled.kind, reason: `${o.agent} making progress again (was: ${stalled.reason})`.slice(0, 2000), since: new Date(now).toISOString() });
    }
    stalled = status === 'running' ? next : undefined;
    const rec: HeartbeatRecord = {
      agent: o.agent, fleet: o.fleet, instance, pid: process.pid, host: hostname(), status, startedAt, at: new Date().toISOString(),
      intervalMs: heartbeatMs, counters, detail: p.detail ?? {}, consumers: c.out, ...(stalled ? { stalled } : {}),
    };
    await kvPut(o.bus.kv.agents, key, rec).catch((e: unknown) => o.log.debug({ err: (e as Error).message }, 'heartbeat not written'));
  };

  let timer: NodeJS.Timeout | undefined;
  const loop = () => {
    if (stopped) return;
    running = once('running').catch((e: unknown) => o.log.debug({ err: (e as Error).message }, 'heartbeat failed'));
    void running.then(() => {
      if (!stopped) timer = setTimeout(loop, heartbeatMs);
    });
  };
  loop();
  return {
    instance,
    beat: async () => {
      await running;
      await once('running');
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      clearTimeout(timer);
      await running;
      await once('stopped');
    },
  };
}
