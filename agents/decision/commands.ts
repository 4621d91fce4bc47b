// The decision agent's request/reply verbs, for the CLI and chat:
//   fleet.cmd.approve    {actionId, by?}           → {actionId, verdict, reasons}
//   fleet.cmd.deny       {actionId, by?, reason?}  → {actionId, verdict: 'deny'}
//   fleet.cmd.approvals  {}                        → PendingView[]
//   fleet.cmd.action     {verb, vmid, by?}         → {actionId?, verdict, reasons}
//   fleet.cmd.hold.clear {vmid, by?}               → {vmid, cleared}
//   fleet.cmd.holds      {}                        → HoldRecord[]
//   fleet.propose.action ActionProposal            → ProposalVerdict (the workflows agent only)
//   fleet.propose.fence  FenceProposal             → ProposalVerdict (the workflows agent only)
import { z } from 'zod';
import { parseCommandArgs } from '../runtime/agent.ts';
import { HomeostatError } from '../../core/mod.ts';
import { ActionProposal, FenceProposal, checkApproval, subjects, type Bus, type CommandRequest, type Envelope, type Stoppable } from '../../bus/mod.ts';
import type { DecisionEngine } from './engine.ts';
import type { DecisionStore } from './store.ts';

const By = z.string().min(1).max(120).optional();
const Signed = z.object({ key: z.string().min(1).max(64), at: z.string().min(1).max(40), sig: z.string().min(1).max(200) }).optional();
const ApproveArgs = z.object({ actionId: z.string().min(1).max(80), by: By, signed: Signed });
const DenyArgs = ApproveArgs.extend({ reason: z.string().max(500).optional() });
const ActionArgs = z.object({ verb: z.string().min(1).max(40), vmid: z.coerce.number().int(), by: By });
const HoldArgs = z.object({ vmid: z.coerce.number().int(), by: By });

const parse = <T>(schema: z.ZodType<T>, env: Envelope<CommandRequest>, verb: string): T => parseCommandArgs(schema, env.data.args, verb);

export function serveCommands(bus: Bus, engine: DecisionEngine, store: DecisionStore, operatorKeys: ReadonlySet<string>): Stoppable[] {
  const who = (env: Envelope<CommandRequest>, by?: string) => by ?? env.data.requestedBy;
  /** Approvals count by key, not by a self-declared name: the name stays for people, the key is the proof. */
  const signer = (verb: 'approve' | 'deny', a: z.infer<typeof ApproveArgs>, env: Envelope<CommandRequest>) => {
    const r = checkApproval(a.signed, verb, a.actionId, operatorKeys);
    if (!r.ok) throw new HomeostatError('HOMEOSTAT_ERR_POLICY_DENIED', r.reason);
    return { by: `${who(env, a.by)} (key ${r.key.slice(0, 12)}…)`.slice(0, 120), key: r.key };
  };
  return [
    bus.serve<CommandRequest>(subjects.cmd('approve'), async (env) => {
      const a = parse(ApproveArgs, env, 'approve');
      const s = signer('approve', a, env);
      return engine.actuator.approvals.approve(a.actionId, s.by, s.key);
    }),
    bus.serve<CommandRequest>(subjects.cmd('deny'), async (env) => {
      const a = parse(DenyArgs, env, 'deny');
      const s = signer('deny', a, env);
      return engine.actuator.approvals.deny(a.actionId, s.by, a.reason ?? `denied by ${s.by}`, s.key);
    }),
    bus.serve<CommandRequest>(subjects.cmd('approvals'), async () => engine.actuator.approvals.list()),
    bus.serve<CommandRequest>(subjects.cmd('action'), async (env) => {
      const a = parse(ActionArgs, env, 'action');
      return engine.actuator.operatorAction(a.verb, a.vmid, who(env, a.by), env);
    }),
    bus.serve<CommandRequest>(subjects.cmd('hold.clear'), async (env) => {
      const a = parse(HoldArgs, env, 'hold.clear');
      return engine.releaseHold(a.vmid, who(env, a.by));
    }),
    bus.serve<CommandRequest>(subjects.cmd('holds'), async () => store.holds()),
    bus.serve<ActionProposal>(subjects.propose('action'), (env) => engine.actuator.proposeForWorkflow(env.data, env), { schema: ActionProposal }),
    bus.serve<FenceProposal>(subjects.propose('fence'), (env) => engine.actuator.proposeFence(env.data, env), { schema: FenceProposal }),
  ];
}
