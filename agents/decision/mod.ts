// The decision agent: incidents in, decisions out. Runbook table first, the LLM advisor when the
// runbook is unsure, and the policy gate (policy.ts) as the last word on every proposal.
// Consumes fleet.incidents.> and fleet.actions.> (durable), serves approve/deny/approvals/action/
// hold.clear/holds on fleet.cmd.*, keeps its state in fleet-state (store.ts) so a restart resumes.
import { DEDUP_WINDOW_MS, patterns, type Action, type Incident, type Stoppable } from '../../bus/mod.ts';
import { HomeostatError } from '../../core/mod.ts';
import { agentHandle, every, type AgentModule } from '../runtime/agent.ts';
import { AdvisorSeam } from './advisor.ts';
import type { Advisor } from '../../llm/mod.ts';
import { serveSilences, sweepSilences } from './silences.ts';
import { serveCommands } from './commands.ts';
import { DecisionEngine } from './engine.ts';
import { DecisionStore } from './store.ts';

export { gate, type GateFacts, type GateResult, type Proposal } from './policy.ts';
export { nextStep, runbookVerbs, type Plan, type Step } from './runbook.ts';
export { actionIdFor } from './actuator.ts';
export { DecisionEngine } from './engine.ts';

/** A KV record younger than this may still have its event on the way: not reconciled yet. */
const RECONCILE_SETTLED_MS = 5000;

export interface DecisionOptions {
  /** An Advisor (llm/); null = none; absent = an OllamaAdvisor from OLLAMA_HOST / OLLAMA_MODEL. */
  advisor?: Advisor | null;
  /** How long a failover request waits for the workflows agent before it becomes an operator notice (default 5 s). */
  failoverTimeoutMs?: number;
  /** Durable consumer names get this suffix (several stacks on one NATS server in tests). */
  durableSuffix?: string;
  /** How often open/resolved incidents in KV are compared with the cases held, also after a reconnect (default 30 s). */
  reconcileMs?: number;
  /** Operators whose signed approvals count (public keys); default HOMEOSTAT_OPERATOR_KEYS. */
  operatorKeys?: string[];
  /** How long a sealed action may wait for the action agent before it expires (default the dedup window). */
  actionTtlMs?: number;
}

export const agent: AgentModule<DecisionOptions> = {
  name: 'decision',
  async start(ctx) {
    const o = ctx.options;
    const failoverTimeoutMs = Math.max(100, o.failoverTimeoutMs ?? 5000);
    const log = ctx.log;
    const store = new DecisionStore(ctx.bus.kv.fleetState);
    const settings = { host: ctx.config.OLLAMA_HOST, model: ctx.config.OLLAMA_MODEL, timeoutMs: ctx.config.OLLAMA_TIMEOUT_MS };
    const advisor = new AdvisorSeam(o.advisor, settings, ctx.bus, ctx.fleet, log, ctx.config.OLLAMA_TIMEOUT_MS + 1000, ctx.metrics);
    const dryRun = ctx.config.HOMEOSTAT_DRY_RUN || ctx.fleet.policies.dryRun;
    if (!ctx.identity) throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', 'NATS_CREDS: the decision agent signs what it approves with its identity; expected its nkey seed file (<data-dir>/creds/decision.nk)');
    const operatorKeys = o.operatorKeys ?? ctx.config.HOMEOSTAT_OPERATOR_KEYS ?? [];
    const engine = new DecisionEngine({ bus: ctx.bus, log, fleet: ctx.fleet, store, advisor, dryRun, failoverTimeoutMs, signer: ctx.identity.signer, actionTtlMs: Math.max(1000, o.actionTtlMs ?? DEDUP_WINDOW_MS), metrics: ctx.metrics });
    const stoppables: Stoppable[] = [];
    let stopping = false;
    const stop = async () => {
      stopping = true;
      engine.stop();
      advisor.stop();
      await Promise.allSettled(stoppables.map((s) => s.stop()));
      await engine.idle();
    };
    try {
      await advisor.init();
      stoppables.push(...serveCommands(ctx.bus, engine, store, new Set(operatorKeys)));
      stoppables.push(...serveSilences(ctx.bus, ctx.fleet));
      stoppables.push(every(60_000, () => sweepSilences(ctx.bus), log));
      await engine.start();
      stoppables.push(await ctx.bus.consume<Action>({
        durable: `decision-actions${o.durableSuffix ?? ''}`,
        filter: patterns.actions,
        handler: (env, msg) => engine.onAction(env, msg.subject),
      }));
      stoppables.push(await ctx.bus.consume<Incident>({
        durable: `decision-incidents${o.durableSuffix ?? ''}`,
        filter: patterns.incidents,
        ackWaitMs: ctx.config.OLLAMA_TIMEOUT_MS + failoverTimeoutMs + 30_000,
        // cases are serial each (engine.serial); a slow advisor on one must not hold up a crash elsewhere
        concurrency: 16,
        handler: (env, msg) => engine.onIncident(env, msg.subject),
      }));
      const reconcile = async () => {
        const n = await engine.reconcile(RECONCILE_SETTLED_MS);
        if (n) log.info({ incidents: n }, 'incidents reconciled from KV (their events were missed)');
      };
      stoppables.push(every(Math.max(100, o.reconcileMs ?? 30_000), reconcile, log));
      stoppables.push(ctx.bus.onReconnect(() => {
        // events of the outage still arrive from the stream first; then compare with KV
        setTimeout(() => void (stopping ? Promise.resolve() : reconcile()).catch((e: unknown) => log.warn({ err: (e as Error).message }, 'reconcile after reconnect failed')), RECONCILE_SETTLED_MS);
      }));
    } catch (e) {
      await stop();
      throw e;
    }
    log.info({ dryRun, advisor: advisor.configured, signingKey: ctx.identity.publicKey, operators: operatorKeys.length }, 'decision agent running');
    return agentHandle(stop);
  },
};
