// `homeostat approve|deny <actionId>`: answered by the decision agent; recorded in the AUDIT stream.
import { HomeostatError } from '../../bus/mod.ts';
import { COMMON_OPTIONS, parseCommand } from '../args.ts';
import { command, withBus } from '../client.ts';
import { printJson, println } from '../output.ts';

const help = (verb: string) => `Usage: homeostat ${verb} <actionId> [--reason TEXT] [--json] [--nats URL]

${verb === 'approve' ? 'Approve' : 'Deny'} an action waiting for an operator (see \`homeostat status\`). Who and when go to the
AUDIT stream. Pending approvals expire to denied after the policy's approvalTimeoutMs.`;

function decide(verb: 'approve' | 'deny') {
  return async (argv: string[]): Promise<number> => {
    const { values, positionals } = parseCommand(argv, { ...COMMON_OPTIONS, reason: { type: 'string' } });
    if (values.help) {
      println(help(verb));
      return 0;
    }
    if (positionals.length !== 1) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', 'expected one action id');
    const by = `cli:${process.env.USER ?? 'operator'}`;
    const r = await withBus(values.nats, (bus) => command(bus, verb, { actionId: positionals[0], by, reason: values.reason }));
    if (values.json) printJson(r);
    else println(`${verb === 'approve' ? 'approved' : 'denied'} ${positionals[0]}`);
    return 0;
  };
}

export const approveMain = decide('approve');
export const denyMain = decide('deny');
