// The action agent: executes approved actions (fleet.actions.approved) exactly once. Durable
// consumer with explicit ack and heartbeats; a per-guest lock in KV that carries the PVE task id;
// a done marker per action; outcomes on fleet.actions.<started|succeeded|failed>.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { z } from 'zod';
import { DEDUP_WINDOW_MS, HomeostatError, subjects, type Action, type Stoppable } from '../../bus/mod.ts';
import { agentHandle, every, parseServices, type AgentModule } from '../runtime/agent.ts';
import { consumeConcurrently } from './consumer.ts';
import { Executor } from './execute.ts';
import { GuestLocks } from './lock.ts';
import { Verifier } from './verify.ts';

export { ActionLock, ActionDone, doneKey } from './lock.ts';

const ActionServices = z.object({
  pveTokenId: z.string().optional(),
  pveTokenSecret: z.string().optional(),
  pveCaPem: z.string().optional(),
  pveInsecure: z.boolean().optional(),
  /** JetStream ack wait; in-flight actions send heartbeats at a third of it. */
  actionAckWaitMs: z.number().int().min(300).default(30_000),
  /** Lock lease; renewed at a third of it. A crashed holder's lock is taken over after it. */
  actionLeaseMs: z.number().int().min(300).default(15_000),
  actionMaxInFlight: z.number().int().min(1).max(256).default(16),
  /** Deliveries of one approved action before it is dead-lettered (restarts and lost locks count). */
  actionMaxDeliver: z.number().int().min(2).max(1000).default(20),
  actionRetryBaseMs: z.number().int().min(0).default(1000),
  /** Durable consumer names get this suffix (several stacks on one NATS server in tests). */
  durableSuffix: z.string().regex(/^[A-Za-z0-9_-]*$/).default(''),
  /** The decision agent's public key(s); default HOMEOSTAT_DECISION_KEYS. */
  decisionKeys: z.array(z.string()).optional(),
}).passthrough();

const DONE_MARKER_MAX_AGE_MS = 7 * 24 * 3600_000;

export const agent: AgentModule = {
  name: 'action',
  async start(ctx) {
    const s = parseServices(ActionServices, ctx.services);
    const log = ctx.log;
    const pve = ctx.pve;
    if (!pve) {
      log.warn('no PVE API configured (PVE_URL or --sim): the action agent stays idle');
      return agentHandle(async () => {});
    }
    const trusted = new Set(s.decisionKeys ?? ctx.config.HOMEOSTAT_DECISION_KEYS ?? []);
    if (!trusted.size) throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', "HOMEOSTAT_DECISION_KEYS: the action agent runs only actions signed by the decision agent; expected its public key (`homeostat up` passes it; see docs/security.md)");
    const holder = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    const locks = new GuestLocks(ctx.bus.kv.locks, holder, s.actionLeaseMs);
    const verifier = new Verifier(pve, ctx.bus, ctx.fleet, {
      pveUrl: ctx.pveUrl,
      tokenId: s.pveTokenId ?? ctx.config.PVE_TOKEN_ID,
      tokenSecret: s.pveTokenSecret ?? ctx.config.PVE_TOKEN_SECRET,
      caPem: s.pveCaPem ?? ctx.config.pveCaPem,
      insecure: s.pveInsecure ?? ctx.config.PVE_INSECURE,
      probeTimeoutMs: ctx.fleet.policies.probeTimeoutMs,
    });
    const executor = new Executor({ bus: ctx.bus, pve, fleet: ctx.fleet, locks, verifier, log, retryBaseMs: s.actionRetryBaseMs, pveTimeoutMs: ctx.config.PVE_TIMEOUT_MS, trusted });
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
        durable: `action-approved${s.durableSuffix}`,
        filter: subjects.action('approved'),
        ackWaitMs: s.actionAckWaitMs,
        maxInFlight: s.actionMaxInFlight,
        maxDeliver: s.actionMaxDeliver,
        catchUpMs: DEDUP_WINDOW_MS,
        keyOf: (env) => env.data.actionId,
        handler: (env, signal) => executor.run(env, { signal }),
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
