// The workflows agent: serves fleet.cmd.boot|shutdown|failover|chaos.list|chaos.run|workflow, runs
// each workflow in the background (the reply carries its id at once), and on start resumes every
// workflow a previous run left `running` in the KV bucket.
import { z } from 'zod';
import { HomeostatError, newId } from '../../core/mod.ts';
import { kvGet, kvKeys, kvList, NodeEvent, subjects, WorkflowRecord, type CommandRequest, type Envelope, type Stoppable } from '../../bus/mod.ts';
import { agentHandle, type AgentModule } from '../runtime/agent.ts';
import {
  ActionTracker, bootPlan, buildMachine, detectSimulator, failoverPlan, findExperiment, fitForMessage, FleetObserver, listExperiments, parseExperiment,
  REAL_PVE_FAULTS, releaseAll, setDesired, shutdownPlan, statusOf, WorkflowRunner,
  type Experiment, type RunContext, type WorkflowDeps, type WorkflowKind,
} from '../../workflows/mod.ts';

export interface WorkflowsOptions {
  /** How often the fleet observer reads the fleet while a workflow waits (ms). */
  pollMs?: number;
}

const PowerArgs = z.object({ layer: z.number().int().min(1).optional(), dryRun: z.boolean().optional(), includeProtected: z.boolean().optional() });
const FailoverArgs = z.object({ node: z.string().min(1).max(64), incidentId: z.string().min(1).max(80).optional() });
const ChaosArgs = z.object({ name: z.string().min(1).max(500).optional(), experiment: z.unknown().optional(), dryRun: z.boolean().optional() });
const WorkflowArgs = z.object({ workflowId: z.string().min(1).max(80).optional(), limit: z.number().int().min(1).max(500).optional() });

function args<T>(schema: z.ZodType<T>, env: Envelope<CommandRequest>): T {
  const r = schema.safeParse(env.data.args ?? {});
  if (!r.success) {
    const i = r.error.issues[0];
    throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `${i.path.join('.') || 'args'}: ${i.message}`);
  }
  return r.data;
}

/** A reply lists each guest of the plan (the CLI draws a board from it) up to this many; a bigger
 *  fleet's list would not fit in one NATS message (5,000 guests: ~400 kB), so it gets the count. */
const REPLY_GUESTS_MAX = 1000;
const guestList = <G>(guests: G[]) => (guests.length <= REPLY_GUESTS_MAX ? { guests } : { guestCount: guests.length });

/** Ended workflow records are kept this long in KV (their events stay in the FLEET stream). */
const RECORD_MAX_AGE_MS = 30 * 24 * 3600_000;

export const newWorkflowId = (kind: WorkflowKind) => `${kind}-${newId().toLowerCase()}`;

export const agent: AgentModule<WorkflowsOptions> = {
  name: 'workflows',
  async start(ctx) {
    const { bus, fleet, log } = ctx;
    const sim = await detectSimulator(ctx.pveAccess ?? {});
    const observer = new FleetObserver({ bus, fleet, log, sim, pve: ctx.pve, pollMs: ctx.options.pollMs });
    const actions = new ActionTracker(bus, log);
    await actions.start();
    const deps: WorkflowDeps = { bus, log, fleet, pve: ctx.pve, sim, observer, actions };
    /** Which workflow holds which slot: `power` (boot/shutdown), `chaos`, `failover:<node>`. */
    const slots = new Map<string, string>();
    const slotOf = (kind: WorkflowKind, a: unknown) =>
      kind === 'chaos' ? 'chaos' : kind === 'failover' ? `failover:${(a as { node?: string })?.node}` : 'power';
    const runner = new WorkflowRunner({
      bus, log,
      build: (run, emit) => buildMachine(deps, run, emit),
      statusOf,
      onEnd: async (run, status) => {
        ctx.metrics?.workflows.inc({ kind: run.kind, result: status });
        for (const [k, id] of slots) if (id === run.workflowId) slots.delete(k);
        if (run.kind === 'boot' || run.kind === 'failover') await releaseAll(bus, run.workflowId);
      },
    });

    // resume: learn what the action agent did meanwhile, then restore the machines
    const records = [...(await kvList(bus.kv.workflows, '', WorkflowRecord)).values()].filter((r) => r.status === 'running');
    if (records.length) {
      const since = new Date(Math.min(...records.map((r) => Date.parse(r.startedAt))) - 1000);
      await actions.preload(since).catch((e: unknown) => log.warn({ err: (e as Error).message }, 'could not replay actions; relying on dedup'));
      for (const r of records) slots.set(slotOf(r.kind, (r.input as { args?: unknown })?.args), r.workflowId);
      const resumed = await runner.resumeAll();
      log.info({ resumed }, 'workflows resumed');
    }

    const pruned = await runner.prune(RECORD_MAX_AGE_MS).catch(() => 0);
    if (pruned) log.info({ pruned }, 'old workflow records pruned');

    const reserve = (slot: string, workflowId: string, kind: WorkflowKind) => {
      const other = slots.get(slot);
      if (other) throw new HomeostatError('HOMEOSTAT_ERR_WORKFLOW', `${slot === 'power' ? 'a boot or shutdown' : slot === 'chaos' ? 'a chaos experiment' : 'a failover of this node'} is already running (${other}); wait for it, or follow it with \`homeostat events --subject 'fleet.workflows.>'\``);
      slots.set(slot, workflowId);
      return () => slots.get(slot) === workflowId && slots.delete(slot);
    };

    const launch = async (run: RunContext, slot: string | undefined, plan: () => Promise<{ input: unknown; reply: Record<string, unknown>; stored: Record<string, unknown>; dryRun?: boolean }>) => {
      const release = slot ? reserve(slot, run.workflowId, run.kind) : () => false;
      try {
        const p = await plan();
        const { ended } = await runner.launch({ run, input: p.input, stored: p.stored });
        const base = { workflowId: run.workflowId, kind: run.kind, startedAt: new Date().toISOString(), ...p.reply };
        if (!p.dryRun) return base;
        const rec = await ended;
        return { ...base, dryRun: true, status: rec.status, output: rec.output };
      } catch (e) {
        release();
        throw e;
      }
    };

    // dry-run holds for workflows too: they plan and report, and the gate would refuse each action anyway
    const dryRun = ctx.config.HOMEOSTAT_DRY_RUN || fleet.policies.dryRun;
    const power = (kind: 'boot' | 'shutdown') => async (env: Envelope<CommandRequest>) => {
      const a = args(PowerArgs, env);
      if (dryRun) a.dryRun = true;
      const run: RunContext = { kind, workflowId: newWorkflowId(kind), correlationId: env.correlationId };
      return launch(run, a.dryRun ? undefined : 'power', async () => {
        if (kind === 'boot') {
          const p = await bootPlan(deps, run.workflowId, a);
          return { input: p.input, stored: { args: a }, reply: { ...guestList(p.guests), ...(a.layer !== undefined ? { layer: a.layer } : {}) }, dryRun: a.dryRun };
        }
        const p = await shutdownPlan(deps, run.workflowId, a);
        // guests already down stay down: the fleet is being shut down on purpose
        if (!a.dryRun) await setDesired(bus, p.input.alreadyStopped ?? [], 'stopped', { workflowId: run.workflowId, reason: 'graceful shutdown' });
        return { input: p.input, stored: { args: a, held: p.held }, reply: { ...guestList(p.guests), held: p.held, protectedKept: p.kept, ...(a.layer !== undefined ? { layer: a.layer } : {}) }, dryRun: a.dryRun };
      });
    };

    const chaosExperiment = (a: z.infer<typeof ChaosArgs>): Experiment => {
      const e = a.experiment !== undefined ? parseExperiment(a.experiment, fleet, a.name ?? 'experiment') : a.name ? findExperiment(a.name, fleet) : undefined;
      if (!e) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', 'expected an experiment name or an experiment');
      if (!sim) {
        const i = e.method.findIndex((m) => !(REAL_PVE_FAULTS as readonly string[]).includes(m.fault));
        if (i >= 0) throw new HomeostatError('HOMEOSTAT_ERR_EXPERIMENT', `${e.name}: method[${i}].fault: ${e.method[i].fault} needs the simulator; against real PVE only ${REAL_PVE_FAULTS.join('/')}`);
      }
      return e;
    };

    const served: Stoppable[] = [
      bus.serve<CommandRequest>(subjects.cmd('boot'), power('boot')),
      bus.serve<CommandRequest>(subjects.cmd('shutdown'), power('shutdown')),
      bus.serve<CommandRequest>(subjects.cmd('failover'), async (env) => {
        const { node, incidentId } = args(FailoverArgs, env);
        const running = slots.get(`failover:${node}`);
        if (running) {
          const rec = await kvGet(bus.kv.workflows, kvKeys.workflow(running), WorkflowRecord);
          return { workflowId: running, kind: 'failover', node, existing: true, startedAt: rec?.value.startedAt ?? new Date().toISOString() };
        }
        const run: RunContext = { kind: 'failover', workflowId: newWorkflowId('failover'), correlationId: env.correlationId, ...(incidentId ? { incidentId } : {}) };
        return launch(run, `failover:${node}`, async () => {
          const p = await failoverPlan(deps, run.workflowId, node, { automatic: incidentId !== undefined });
          const guests = p.input.guests.map((g) => ({ vmid: g.vmid, name: fleet.byVmid.get(g.vmid)?.name ?? String(g.vmid), layer: g.layer, node, dependsOn: g.dependsOn }));
          for (const vmid of p.protectedHeld) {
            const reason = `protected guest: an automatic failover leaves it to an operator (\`homeostat failover ${node}\`)`;
            log.warn({ vmid, node }, reason);
            await bus.publish(subjects.workflow('failover', run.workflowId, 'GUEST.HELD'), 'GUEST.HELD', { workflowId: run.workflowId, kind: 'failover', event: 'GUEST.HELD', vmid, node, detail: { reason, protected: true } }, { correlationId: run.correlationId }).catch(() => undefined);
          }
          return { input: p.input, stored: { args: { node, ...(incidentId ? { incidentId } : {}) } }, reply: { node, guests, fenceDelayMs: p.input.fenceDelayMs, protectedHeld: p.protectedHeld } };
        });
      }),
      bus.serve<CommandRequest>(subjects.cmd('chaos.list'), async () =>
        listExperiments(fleet).map((x) => ({
          name: x.name, file: x.file, ...(x.error ? { error: x.error } : {}),
          ...(x.experiment ? { description: x.experiment.description, faults: x.experiment.method.map((m) => `${m.fault} ${m.target}${m.repeat > 1 ? ` ×${m.repeat}` : ''}`), sloMs: x.experiment.slo.mttrMs } : {}),
        }))),
      bus.serve<CommandRequest>(subjects.cmd('chaos.run'), async (env) => {
        const a = args(ChaosArgs, env);
        if (dryRun) a.dryRun = true;
        const experiment = chaosExperiment(a);
        const run: RunContext = { kind: 'chaos', workflowId: newWorkflowId('chaos'), correlationId: env.correlationId };
        return launch(run, a.dryRun ? undefined : 'chaos', async () => ({
          input: { workflowId: run.workflowId, experiment, dryRun: a.dryRun ?? false },
          stored: { args: { name: experiment.name, dryRun: a.dryRun ?? false } },
          reply: { experiment: experiment.name, sloMs: experiment.slo.mttrMs },
          dryRun: a.dryRun,
        }));
      }),
      bus.serve<CommandRequest>(subjects.cmd('workflow'), async (env) => {
        const a = args(WorkflowArgs, env);
        const strip = (r: WorkflowRecord) => ({ workflowId: r.workflowId, kind: r.kind, status: r.status, startedAt: r.startedAt, updatedAt: r.updatedAt, ...(r.output !== undefined ? { output: fitForMessage(r.output) } : {}) });
        if (a.workflowId) {
          const r = await kvGet(bus.kv.workflows, kvKeys.workflow(a.workflowId), WorkflowRecord);
          if (!r) throw new HomeostatError('HOMEOSTAT_ERR_NOT_FOUND', `no workflow ${a.workflowId}`);
          return strip(r.value);
        }
        const all = [...(await kvList(bus.kv.workflows, '', WorkflowRecord)).values()].sort((x, y) => y.startedAt.localeCompare(x.startedAt));
        return all.slice(0, a.limit ?? 50).map(strip);
      }),
      // `homeostat cancel`: a chaos experiment aborts into its rollbacks; a boot or shutdown starts
      // nothing more (the guests in flight finish); a failover has no safe midway stop (a node half
      // fenced, its guests half moved) and runs to its end
      bus.serve<CommandRequest>(subjects.cmd('workflow.cancel'), async (env) => {
        const a = args(WorkflowArgs, env);
        if (!a.workflowId) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', 'workflow.cancel: expected args.workflowId');
        const r = await kvGet(bus.kv.workflows, kvKeys.workflow(a.workflowId), WorkflowRecord);
        if (!r) throw new HomeostatError('HOMEOSTAT_ERR_NOT_FOUND', `no workflow ${a.workflowId}`);
        if (r.value.status !== 'running') return { workflowId: a.workflowId, cancelled: false, reason: `it already ended (${r.value.status})` };
        if (r.value.kind === 'failover') return { workflowId: a.workflowId, cancelled: false, reason: 'a failover has no safe midway stop (a node half fenced, its guests half moved); it runs to its end' };
        const reason = `cancelled by ${env.data.requestedBy}`;
        const event = r.value.kind === 'chaos' ? { type: 'ABORT', reason } : { type: 'CANCEL', reason };
        const sent = runner.send(a.workflowId, event as { type: string });
        const effect = r.value.kind === 'chaos' ? 'its rollbacks run now' : `nothing more is ${r.value.kind === 'boot' ? 'started' : 'shut down'}; the guests in flight finish`;
        return { workflowId: a.workflowId, kind: r.value.kind, cancelled: sent, ...(sent ? { effect } : { reason: 'not running in this agent' }) };
      }),
      // a node answering again during the fence delay aborts its failover (never fence a live node)
      bus.subscribe<NodeEvent>('fleet.events.node.*', (env) => {
        if (!env.data.reachable || env.data.status !== 'online') return;
        const id = slots.get(`failover:${env.data.node}`);
        if (id) runner.send(id, { type: 'NODE.REACHABLE' });
      }, { schema: NodeEvent }),
    ];
    await bus.nc.flush();
    log.info({ simulator: !!sim }, 'workflows ready: fleet.cmd.boot|shutdown|failover|chaos.list|chaos.run|workflow');

    return agentHandle(async () => {
      await Promise.all(served.map((s) => s.stop()));
      await runner.stop();
      await observer.stop();
      await actions.stop();
      await sim?.close();
    });
  },
};
