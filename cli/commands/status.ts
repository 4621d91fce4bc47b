// `homeostat status`: nodes, guests by layer, open incidents, pending approvals, advisor.
import { isHomeostatError } from '../../core/mod.ts';
import { fleetStatus, type FleetStatus } from '../../agents/operator/mod.ts';
import { COMMON_OPTIONS, parseCommand } from '../args.ts';
import { command, loadFleetForCli, withBus } from '../client.ts';
import { paint, printJson, println, table } from '../output.ts';
import { selfCheck, selfCheckLine, type SelfCheck } from '../self-check.ts';

const HELP = `Usage: homeostat status [--json] [--nats URL] [--fleet FILE]

Nodes, guests by layer (state, health, desired state), open incidents, pending approvals and
whether the LLM advisor is available. Answered by the operator agent; read straight from the
KV buckets when it is not running.`;

export function renderStatus(s: FleetStatus, self?: SelfCheck): string {
  const out: string[] = [];
  out.push(paint(`fleet ${s.fleet}: ${s.summary.ok}/${s.summary.guests} guests as desired, ${s.summary.openIncidents} open incident(s), ${s.summary.pendingApprovals} pending approval(s)`, 'bold'));
  if (self) out.push(paint(selfCheckLine(self), self.ok ? 'green' : 'red'));
  if (s.api && !s.api.available) out.push(paint(`PVE API unavailable since ${s.api.since}: ${s.api.reason ?? ''}`, 'red'));
  out.push('');
  out.push(table([['NODE', 'STATUS', 'REACHABLE'], ...s.nodes.map((n) => [n.node, n.status === 'online' ? paint('online', 'green') : paint(n.status, 'red'), n.reachable ? 'yes' : paint(`no${'fenced' in n && n.fenced ? ' (fenced)' : ''}`, 'red')])]));
  out.push('');
  const rows = [['LAYER', 'VMID', 'NAME', 'NODE', 'STATE', 'HEALTH', 'DESIRED', '']];
  for (const g of s.guests) {
    const state = g.state === 'running' ? paint(g.state, 'green') : g.state === 'stopped' ? paint(g.state, g.desired === 'stopped' ? 'gray' : 'red') : paint(g.state, 'yellow');
    const health = g.health === 'healthy' ? paint(g.health, 'green') : g.health === 'unhealthy' ? paint(g.health, 'red') : paint(g.health, 'gray');
    rows.push([String(g.layer), String(g.vmid), g.name, g.node, state, health, g.maintenance ? 'maintenance' : g.desired, `${g.protected ? 'protected ' : ''}${g.ok ? '' : paint('✗', 'red')}`]);
  }
  out.push(table(rows));
  if (s.incidents.length) {
    out.push('', paint('Open incidents', 'bold'));
    for (const i of s.incidents) out.push(`  ${i.id}  ${i.severity.padEnd(8)} ${i.title}${i.symptoms.length ? ` (+${i.symptoms.length} symptom(s))` : ''}${i.suppressed.length ? ` (${i.suppressed.length} suppressed)` : ''}`);
  }
  if (s.approvals.length) {
    out.push('', paint('Waiting for approval (homeostat approve|deny <id>)', 'bold'));
    for (const a of s.approvals) out.push(`  ${a.actionId}  ${a.verb} ${a.target.vmid}  ${a.rationale ?? ''}`);
  }
  if (s.workflows.length) {
    out.push('', paint('Running workflows', 'bold'));
    for (const w of s.workflows) out.push(`  ${w.workflowId}  ${w.kind}`);
  }
  if (s.advisor) out.push('', `advisor: ${s.advisor.available ? paint(`available (${s.advisor.model ?? ''})`, 'green') : paint(`unavailable — ${s.advisor.reason ?? 'no model'}; healing by runbooks`, 'yellow')}`);
  return out.join('\n');
}

export async function statusMain(argv: string[]): Promise<number> {
  const { values } = parseCommand(argv, { ...COMMON_OPTIONS, fleet: { type: 'string' } }, false);
  if (values.help) {
    println(HELP);
    return 0;
  }
  const [s, self] = await withBus(values, async (bus, config) => {
    const check = selfCheck(bus).catch(() => undefined);
    try {
      return [await command<FleetStatus>(bus, 'status', {}, 5000), await check] as const;
    } catch (e) {
      if (!isHomeostatError(e, 'HOMEOSTAT_ERR_TIMEOUT')) throw e;
      return [await fleetStatus(bus, loadFleetForCli(values.fleet, config)), await check] as const;
    }
  });
  if (values.json) printJson({ ...s, selfCheck: self });
  else println(renderStatus(s, self));
  return s.summary.down > 0 || s.summary.openIncidents > 0 ? 0 : 0;
}
