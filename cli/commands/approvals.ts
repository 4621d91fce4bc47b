// `homeostat approve|deny <actionId>`: answered by the decision agent; recorded in the AUDIT stream.
import { HomeostatError } from '../../core/mod.ts';
import { signApproval } from '../../bus/mod.ts';
import { COMMON_OPTIONS, parseCommand } from '../args.ts';
import { command, loadFleetForCli, withBus } from '../client.ts';
import { pendingApprovals } from '../../agents/operator/mod.ts';
import { resolveId } from '../ids.ts';
import { printJson, println } from '../output.ts';

const help = (verb: string) => `Usage: homeostat ${verb} <actionId|prefix> [--reason TEXT] [--json] [--nats URL]

${verb === 'approve' ? 'Approve' : 'Deny'} an action waiting for an operator (see \`homeostat status\`). Signed with the
operator identity (--creds, NATS_CREDS, else <data-dir>/creds/operator.nk); the decision agent
accepts only trusted operator keys and records the key with who and when in the AUDIT stream.
${verb === 'approve' ? 'Exits 1 with the reason when the policy gate refuses the action at approval time.' : ''} Pending approvals expire to denied after the policy's approvalTimeoutMs.`;

function decide(verb: 'approve' | 'deny') {
  return async (argv: string[]): Promise<number> => {
    const { values, positionals } = parseCommand(argv, { ...COMMON_OPTIONS, reason: { type: 'string' } });
    if (values.help) {
      println(help(verb));
      return 0;
    }
    if (positionals.length !== 1) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', 'expected one action id (or a unique prefix of it)');
    const by = `cli:${process.env.USER ?? 'operator'}`;
    // a unique prefix names the pending action; the approval is signed by the operator identity
    // (the decision agent counts approvals by key, not by name)
    const { actionId, r } = await withBus(values, async (bus, _config, identity) => {
      const pending = (await pendingApprovals(bus)).map((p) => p.actionId);
      const id = resolveId(positionals[0], pending, 'pending action', 'see `homeostat status`');
      return { actionId: id, r: await command(bus, verb, { actionId: id, by, reason: values.reason, ...(identity ? { signed: signApproval(identity.signer, verb, id) } : {}) }) };
    });
    if (values.json) printJson(r);
    else println(`${verb === 'approve' ? 'approved' : 'denied'} ${actionId}`);
    return 0;
  };
}

export const approveMain = decide('approve');
export const denyMain = decide('deny');

const RELEASE_HELP = `Usage: homeostat release <vmid> [--json] [--nats URL]

Clear a flap hold-down: after too many remediations in the policy window homeostat stops acting on
a guest and opens a "flapping" incident for a human. Once you have looked at it, release it and
homeostat acts on that guest again. \`homeostat status\` and \`chat "pending approvals"\` show holds.`;

export async function releaseMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, { ...COMMON_OPTIONS, fleet: { type: 'string' } });
  if (values.help) {
    println(RELEASE_HELP);
    return 0;
  }
  const vmid = Number(positionals[0]);
  if (positionals.length !== 1 || !Number.isInteger(vmid) || vmid < 100) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', 'expected one vmid, e.g. `homeostat release 155`');
  const by = `cli:${process.env.USER ?? 'operator'}`;
  const r = await withBus(values, async (bus, config) => {
    const fleet = loadFleetForCli(values.fleet, config);
    if (!fleet.byVmid.has(vmid)) throw new HomeostatError('HOMEOSTAT_ERR_NOT_FOUND', `no guest ${vmid} in fleet ${fleet.name}`);
    return command<{ vmid: number; cleared: boolean }>(bus, 'hold.clear', { vmid, by });
  });
  if (values.json) printJson(r);
  else println(r.cleared ? `released ${vmid}: homeostat acts on it again` : `${vmid} had no flap hold-down: nothing to release`);
  return 0;
}
