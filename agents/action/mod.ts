// The action agent: executes approved actions (fleet.actions.approved) exactly once. Durable
// consumer with explicit ack and heartbeats; a per-guest lock in KV that carries the PVE task id;
// a done marker per action; outcomes on fleet.actions.<started|succeeded|failed>.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { DEDUP_WINDOW_MS, subjects, type Action, type Stoppable } from '../../bus/mod.ts';
import { HomeostatError } from '../../core/mod.ts';
import { agentHandle, every, type AgentModule } from '../runtime/agent.ts';
import { consumeConcurrently } from './consumer.ts';
import { Executor } from './execute.ts';
import { GuestLocks } from './lock.ts';
import { Verifier } from './verify.ts';

export { ActionLock, ActionDone, doneKey } from './lock.ts';

export interface ActionOptions {
  /** JetStream ack wait; in-flight actions send heartbeats at a third of it (default 30 s). */
  ackWaitMs?: number;
  /** Lock lease; renewed at a third of it. A crashed holder's lock is taken over after it (default 15 s). */
  leaseMs?: number;
  /** Actions run at once (default 16), not counting those only verifying (`maxVerifying`). */
  maxInFlight?: number;
  /** Actions past their PVE task, waiting for their guest to be as wanted (a start: its boot), that
   *  do not hold one of the `maxInFlight` places; they keep their guest lock (default 2,048). */
  maxVerifying?: number;
  /** Deliveries of one approved action before it is dead-lettered; restarts and lost locks count (default 20). */
  maxDeliver?: number;
  /** First step of the retry backoff (default 1 s). */
  retryBaseMs?: number;
  /** Durable consumer names get this suffix (several stacks on one NATS server in tests). */
  durableSuffix?: string;
  /** The decision agent's public key(s); default HOMEOSTAT_DECISION_KEYS. */
  decisionKeys?: string[];
}

const DONE_MARKER_MAX_AGE_MS = 7 * 24 * 3600_000;

export const agent: AgentModule<ActionOptions> = {
  name: 'action',
  async start(ctx) {
    const o = ctx.options;
    const log = ctx.log;
    const pve = ctx.pve;
    if (!pve) {
      log.warn('no PVE API configured (PVE_URL or --sim): the action agent stays idle');
      return agentHandle(async () => {});
    }
    const trusted = new Set(o.decisionKeys ?? ctx.config.HOMEOSTAT_DECISION_KEYS ?? []);
    if (!trusted.size) throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', "HOMEOSTAT_DECISION_KEYS: the action agent runs only actions signed by the decision agent; expected its public key (`homeostat up` passes it; see docs/security.md)");
    const holder = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    const locks = new GuestLocks(ctx.bus.kv.locks, holder, o.leaseMs ?? 15_000);
    const a = ctx.pveAccess;
    const verifier = new Verifier(pve, ctx.bus, ctx.fleet, {
      pveUrl: a?.url, tokenId: a?.tokenId, tokenSecret: a?.tokenSecret, caPem: a?.caPem, insecure: a?.insecure ?? false,
      probeTimeoutMs: ctx.fleet.policies.probeTimeoutMs,
    });
    const executor = new Executor({ bus: ctx.bus, pve, fleet: ctx.fleet, locks, verifier, log, retryBaseMs: o.retryBaseMs ?? 1000, pveTimeoutMs: ctx.config.PVE_TIMEOUT_MS, trusted });
    const stoppables: Stoppable[] = [];
    const stop = async () => {
      await Promise.allSettled(stoppables.map((x) => x.stop()));
      await verifier.close();
    };
    try {
      stoppables.push(every(24 * 3600_000, async () => {
        const n = await locks.pruneDone(DONE_MARKER_MAX_AGE_MS);
        if (n) log.info({ pruned: n }, 'old done markers pruned');
      }, log));
      stoppables.push(await consumeConcurrently<Action>(ctx.bus, {
        durable: `action-approved${o.durableSuffix ?? ''}`,
        filter: subjects.action('approved'),
        // working() every ackWait/3 keeps a running action's message; an action in flight on a
        // replica that was SIGKILLed comes back to the other after this (bench/scale: 30 s was
        // the MTTR p95). A redelivery while the first is alive meets the guest lock and the done
        // marker, so one action per guest holds either way.
        ackWaitMs: Math.max(300, o.ackWaitMs ?? 10_000),
        maxInFlight: Math.min(256, Math.max(1, o.maxInFlight ?? 16)),
        maxParked: Math.max(0, o.maxVerifying ?? 2048),
        maxDeliver: Math.max(2, o.maxDeliver ?? 20),
        catchUpMs: DEDUP_WINDOW_MS,
        keyOf: (env) => env.data.actionId,
        handler: (env, signal, givePlace) => executor.run(env, { signal, givePlace }),
        log,
      }));
    } catch (e) {
      await stop();
      throw e;
    }
    log.info({ holder, trusted: [...trusted].map((k) => `${k.slice(0, 8)}…`) }, 'action agent running: only actions signed by the decision agent run');
    return agentHandle(stop);
  },
};
