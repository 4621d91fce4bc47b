// What the page can ask and do, as the operator: the same fleet.cmd.* requests and chat the CLI
// sends, so the decision agent's policy gate and the AUDIT stream see every click like a command.
import { z } from 'zod';
import { signApproval, subjects, type Bus, type ChatAnswer, type Signer } from '../../bus/mod.ts';
import { HomeostatError, isHomeostatError } from '../../core/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import { fleetStatus, openIncidents, traceIncident, type FleetStatus } from '../../agents/operator/mod.ts';
import { listExperiments, startWorkflow } from '../../workflows/mod.ts';

const Decide = z.object({ actionId: z.string().min(1).max(80), reason: z.string().max(500).optional() });
const Chat = z.object({ question: z.string().trim().min(1).max(4000), confirm: z.boolean().default(false) });
const Workflow = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('boot'), dryRun: z.boolean().default(false), layer: z.number().int().min(0).optional() }),
  z.object({ kind: z.literal('shutdown'), dryRun: z.boolean().default(false), layer: z.number().int().min(0).optional() }),
  z.object({ kind: z.literal('failover'), node: z.string().min(1).max(64) }),
  z.object({ kind: z.literal('chaos'), experiment: z.string().min(1).max(120), dryRun: z.boolean().default(false) }),
]);

export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  const r = schema.safeParse(body);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `${i.path.join('.') || 'body'}: ${i.message}`);
  }
  return r.data;
}

export class ConsoleApi {
  /** `signer`: the operator key approvals are signed with (the decision agent counts keys, not names). */
  constructor(private readonly bus: Bus, private readonly fleet: Fleet, private readonly operator: string, private readonly signer?: Signer) {}

  /** The operator agent's answer when it runs; straight from KV otherwise (like `homeostat status`). */
  async status(): Promise<FleetStatus> {
    try {
      return await this.bus.request<FleetStatus>(subjects.cmd('status'), 'Command', { args: {}, requestedBy: this.operator }, 3000);
    } catch (e) {
      if (!isHomeostatError(e, 'HOMEOSTAT_ERR_TIMEOUT')) throw e;
      return fleetStatus(this.bus, this.fleet);
    }
  }

  incidents() {
    return openIncidents(this.bus, true).then((l) => l.slice(0, 100));
  }

  trace(id: string) {
    return traceIncident(this.bus, id);
  }

  decide(verb: 'approve' | 'deny', body: unknown) {
    const b = parseBody(Decide, body);
    return this.cmd(verb, { actionId: b.actionId, by: this.operator, ...(b.reason ? { reason: b.reason } : {}), ...(this.signer ? { signed: signApproval(this.signer, verb, b.actionId) } : {}) });
  }

  release(vmid: number) {
    return this.cmd('hold.clear', { vmid, by: this.operator });
  }

  chat(body: unknown): Promise<ChatAnswer> {
    const b = parseBody(Chat, body);
    return this.bus.request<ChatAnswer>(subjects.chat(), 'ChatQuestion', { question: b.question, confirm: b.confirm, requestedBy: this.operator }, 30_000);
  }

  async startWorkflow(body: unknown) {
    const w = parseBody(Workflow, body);
    const verb = w.kind === 'chaos' ? 'chaos.run' : w.kind;
    const args = w.kind === 'chaos' ? { name: w.experiment, ...(w.dryRun ? { dryRun: true } : {}) }
      : w.kind === 'failover' ? { node: w.node }
        : { ...(w.dryRun ? { dryRun: true } : {}), ...(w.layer !== undefined ? { layer: w.layer } : {}) };
    return (await startWorkflow(this.bus, verb, args, this.operator)).reply;
  }

  experiments() {
    return listExperiments(this.fleet).map((e) => ({
      name: e.name,
      description: e.experiment?.description,
      error: e.error,
    }));
  }

  private cmd(verb: string, args: Record<string, unknown>) {
    return this.bus.request(subjects.cmd(verb), 'Command', { args, requestedBy: this.operator }, 10_000);
  }
}
