// Operator verbs: `start|stop|reboot <vmid>` (proposals to the decision agent's policy gate, like
// any other proposer), `maintenance on|off <vmid|node>` (desired state: homeostat leaves it alone),
// `workflows list`, `watch <id>`, `cancel <id>`.
import { HomeostatError } from '../../core/mod.ts';
import { DesiredState, kvGet, kvKeys, kvPut, type Bus } from '../../bus/mod.ts';
import { followWorkflow, WorkflowBoard, type WorkflowKind } from '../../workflows/mod.ts';
import { COMMON_OPTIONS, parseCommand } from '../args.ts';
import { command, loadFleetForCli, withBus } from '../client.ts';
import { resolveId } from '../ids.ts';
import { paint, printJson, println, table } from '../output.ts';
import { localTime } from '../../core/mod.ts';

const by = () => `cli:${process.env.USER ?? 'operator'}`;

const GUEST_HELP = (verb: string) => `Usage: homeostat ${verb} <vmid> [--json] [--nats URL]

${verb === 'stop' ? 'Shut the guest down gracefully (PVE shutdown) and set its desired state to stopped' : verb === 'start' ? 'Start the guest (its desired state becomes running)' : 'Reboot the guest'}.
An operator proposal to the decision agent's policy gate, like every other proposer: a protected
guest waits for \`homeostat approve <id>\`, a guest in maintenance or held is refused with the reason.
The state changes it causes open no incident. Exit 0 allowed (or waiting for approval), 1 refused.`;

export function guestActionMain(verb: 'start' | 'stop' | 'reboot') {
  return async (argv: string[]): Promise<number> => {
    const { values, positionals } = parseCommand(argv, { ...COMMON_OPTIONS, fleet: { type: 'string' } });
    if (values.help) {
      println(GUEST_HELP(verb));
      return 0;
    }
    const vmid = Number(positionals[0]);
    if (positionals.length !== 1 || !Number.isInteger(vmid)) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `expected one vmid, e.g. \`homeostat ${verb} 159\``);
    const r = await withBus(values, async (bus, config) => {
      const fleet = loadFleetForCli(values.fleet, config);
      if (!fleet.byVmid.has(vmid)) throw new HomeostatError('HOMEOSTAT_ERR_NOT_FOUND', `no guest ${vmid} in fleet ${fleet.name}`);
      if (verb === 'start') {
        // the operator decides the desired state: a guest shut down on purpose may be started again
        const cur = await kvGet(bus.kv.fleetState, kvKeys.desired(vmid), DesiredState);
        if (cur?.value.state === 'stopped') await kvPut(bus.kv.fleetState, kvKeys.desired(vmid), { ...cur.value, state: 'running', by: by(), reason: 'started by an operator', at: new Date().toISOString() });
      }
      return command<{ actionId?: string; verdict: string; reasons: string[] }>(bus, 'action', { verb: verb === 'stop' ? 'shutdown' : verb, vmid, by: by() });
    });
    if (values.json) printJson(r);
    else {
      const head = r.verdict === 'allow' ? paint(`${verb} ${vmid}: allowed`, 'green') : r.verdict === 'needs-approval' ? paint(`${verb} ${vmid}: waits for an approval (homeostat approve ${r.actionId})`, 'yellow') : paint(`${verb} ${vmid}: ${r.verdict}`, 'red');
      println(`${head}${r.actionId ? `  [action ${r.actionId}]` : ''}`);
      for (const reason of r.reasons) println(`  ${reason}`);
    }
    return r.verdict === 'allow' || r.verdict === 'needs-approval' || r.verdict === 'dry-run' ? 0 : 1;
  };
}

const MAINT_HELP = `Usage: homeostat maintenance on|off <vmid|node> [--reason TEXT] [--json] [--nats URL]

Maintenance is a desired state: homeostat leaves the guest (or every guest of the node) alone —
no incident, no remediation — until \`maintenance off\`. Shown in \`homeostat status\`.`;

export async function maintenanceMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, { ...COMMON_OPTIONS, reason: { type: 'string' }, fleet: { type: 'string' } });
  if (values.help) {
    println(MAINT_HELP);
    return 0;
  }
  const [mode, target] = positionals;
  if (positionals.length !== 2 || (mode !== 'on' && mode !== 'off')) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', 'expected `homeostat maintenance on|off <vmid|node>`');
  const changed = await withBus(values, async (bus, config) => {
    const fleet = loadFleetForCli(values.fleet, config);
    const vmids = /^\d+$/.test(target) ? (fleet.byVmid.has(Number(target)) ? [Number(target)] : []) : fleet.guests.filter((g) => g.node === target).map((g) => g.vmid);
    if (!vmids.length) throw new HomeostatError('HOMEOSTAT_ERR_NOT_FOUND', `no guest or node ${JSON.stringify(target)} in fleet ${fleet.name}`);
    const at = new Date().toISOString();
    for (const vmid of vmids) {
      const cur = (await kvGet(bus.kv.fleetState, kvKeys.desired(vmid), DesiredState))?.value;
      const next: DesiredState = { state: cur?.state ?? 'running', maintenance: mode === 'on', by: by(), reason: values.reason ?? `maintenance ${mode} by an operator`, at };
      await kvPut(bus.kv.fleetState, kvKeys.desired(vmid), next);
    }
    return vmids;
  });
  if (values.json) printJson({ maintenance: mode === 'on', vmids: changed });
  else println(`maintenance ${mode}: ${changed.join(', ')}${mode === 'on' ? ' — homeostat leaves them alone' : ' — homeostat watches them again'}`);
  return 0;
}

interface WorkflowRow { workflowId: string; kind: WorkflowKind; status: string; startedAt: string; updatedAt: string }

async function workflowIds(bus: Bus): Promise<WorkflowRow[]> {
  return command<WorkflowRow[]>(bus, 'workflow', { limit: 500 }, 5000);
}

export async function workflowsMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, { ...COMMON_OPTIONS, limit: { type: 'string' } });
  if (values.help || positionals[0] !== 'list') {
    println('Usage: homeostat workflows list [--limit N] [--json] [--nats URL]\n\nBoot, shutdown, failover and chaos runs, newest first, with their status.');
    return values.help ? 0 : 2;
  }
  const rows = await withBus(values, (bus) => command<WorkflowRow[]>(bus, 'workflow', { limit: Number(values.limit ?? 50) }, 5000));
  if (values.json) printJson(rows);
  else println(table([['ID', 'KIND', 'STATUS', 'STARTED', 'UPDATED'], ...rows.map((w) => [w.workflowId, w.kind, w.status === 'running' ? paint(w.status, 'yellow') : w.status === 'done' ? paint(w.status, 'green') : paint(w.status, 'red'), localTime(w.startedAt).slice(0, 19), localTime(w.updatedAt)])]));
  return 0;
}

export async function watchMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, COMMON_OPTIONS);
  if (values.help || positionals.length !== 1) {
    println('Usage: homeostat watch <workflowId|prefix> [--json] [--nats URL]\n\nFollow a workflow (from its start) until it ends; Ctrl-C stops watching, not the workflow.');
    return values.help ? 0 : 2;
  }
  return withBus(values, async (bus) => {
    const all = await workflowIds(bus);
    const id = resolveId(positionals[0], all.map((w) => w.workflowId), 'workflow', 'see `homeostat workflows list`');
    const w = all.find((x) => x.workflowId === id)!;
    const board = new WorkflowBoard({ workflowId: id, kind: w.kind } as never, (t, c) => paint(t, c));
    const ac = new AbortController();
    const onSignal = () => ac.abort();
    process.once('SIGINT', onSignal);
    try {
      const r = await followWorkflow(bus, {
        kind: w.kind, workflowId: id, since: new Date(Date.parse(w.startedAt) - 1000), signal: ac.signal,
        onEvent: (ev) => (values.json ? printJson({ subject: ev.subject, ...ev.env }) : println(board.line(ev.env.data, ev.env.ts))),
      }).catch((e: unknown) => {
        if (ac.signal.aborted) return undefined;
        throw e;
      });
      if (!r) {
        process.stderr.write(`stopped watching ${id}; it keeps running\n`);
        return 130;
      }
      if (!values.json) println(`${r.kind} ${r.workflowId}: ${r.status}`);
      return r.status === 'done' ? 0 : 1;
    } finally {
      process.off('SIGINT', onSignal);
    }
  });
}

export async function cancelMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, COMMON_OPTIONS);
  if (values.help || positionals.length !== 1) {
    println(`Usage: homeostat cancel <workflowId|prefix> [--json] [--nats URL]

Cancel a running workflow. A chaos experiment stops and its rollbacks run; a boot or shutdown
starts (or shuts down) nothing more, the guests in flight finish, and it ends "aborted"; a failover
has no safe midway stop and refuses (exit 1).`);
    return values.help ? 0 : 2;
  }
  const r = await withBus(values, async (bus) => {
    const all = (await workflowIds(bus)).filter((w) => w.status === 'running');
    const id = resolveId(positionals[0], all.map((w) => w.workflowId), 'running workflow', 'see `homeostat workflows list`');
    return command<{ workflowId: string; cancelled: boolean; reason?: string; effect?: string }>(bus, 'workflow.cancel', { workflowId: id, by: by() }, 5000);
  });
  if (values.json) printJson(r);
  else println(r.cancelled ? `cancelling ${r.workflowId}: ${r.effect ?? 'its rollbacks run now'} (\`homeostat watch ${r.workflowId}\`)` : `${r.workflowId} not cancelled: ${r.reason ?? ''}`);
  return r.cancelled ? 0 : 1;
}
