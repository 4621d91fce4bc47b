// `homeostat doctor`: is the loop itself able to heal? Exit 0 when nothing fails, 1 when something
// does (warnings alone do not), 2 for usage errors.
import { COMMON_OPTIONS, parseCommand } from '../args.ts';
import { withBus } from '../client.ts';
import { paint, printJson, println } from '../output.ts';
import { selfCheck, type CheckStatus } from '../self-check.ts';

const HELP = `Usage: homeostat doctor [--json] [--nats URL] [--creds FILE]

A self-check of homeostat itself:
  - each agent alive (its heartbeat in the agents bucket), and not stalled
  - the last sensing poll, and whether sensing reaches the PVE API
  - consumer lag of the agents' durable consumers (pending, in progress)
  - dead letters stored in the last hour
  - the LLM advisor (Ollama) as the decision agent last saw it
  - clock skew of every agent and of this machine against the NATS server
  - open incidents of homeostat itself ("homeostat: action agent down …")
Exit 0 when every check passes (warnings allowed), 1 when one fails.`;

const MARK: Record<CheckStatus, string> = { ok: paint('✓', 'green'), warn: paint('!', 'yellow'), fail: paint('✗', 'red') };

export async function doctorMain(argv: string[]): Promise<number> {
  const { values } = parseCommand(argv, COMMON_OPTIONS, false);
  if (values.help) {
    println(HELP);
    return 0;
  }
  const r = await withBus(values, (bus) => selfCheck(bus));
  if (values.json) printJson(r);
  else {
    for (const c of r.checks) println(`${MARK[c.status]} ${c.summary}`);
    const fails = r.checks.filter((c) => c.status === 'fail').length;
    println(fails ? paint(`${fails} problem(s)`, 'red') : paint('all good', 'green'));
  }
  return r.ok ? 0 : 1;
}
