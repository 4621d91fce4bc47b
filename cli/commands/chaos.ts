// `homeostat chaos list` and `homeostat chaos run <name|file>`: experiments from files, run by the
// workflows agent; the report (per-fault MTTR vs SLO, timeline, PASS/FAIL) as text or JSON.
import { basename } from 'node:path';
import { HomeostatError, isHomeostatError } from '../../core/mod.ts';
import type { ChaosReport } from '../../state-machines/mod.ts';
import { chaosTimeline, healingTimeline, listExperiments, loadExperimentFile, renderChaosReport } from '../../workflows/mod.ts';
import { COMMON_OPTIONS, parseCommand } from '../args.ts';
import { command, loadFleetForCli, withBus } from '../client.ts';
import { loadConfig } from '../../agents/runtime/config.ts';
import { paint, printJson, println, table, wrap } from '../output.ts';
import { confirmByDryRun, runAndFollow } from './workflow.ts';
import { YES_FLAG } from '../confirm.ts';

const HELP = `Usage: homeostat chaos list [--json] [--nats URL]
       homeostat chaos run <name|file.yaml> [--dry-run] [--yes] [--no-wait] [--json] [--nats URL] [--fleet FILE]

Chaos experiments (YAML, see workflows/experiments/): verify the steady state, inject the faults
(the simulator's /sim/faults; against real PVE only guest stop/shutdown), watch homeostat heal,
verify the steady state again; rollbacks always run, even after an abort or a restart of the
workflows agent. The report gives each fault's MTTR against the SLO, the timeline and PASS/FAIL.

  --dry-run     validate and print the plan; inject nothing
  --yes, -y     do not ask (without it the plan is confirmed on a terminal; refused when stdin is not one)
  --no-wait     print the workflow id and return
  --json        JSON lines: one per event, then {"result": <report>, "timeline": [...], ...}
  --fleet FILE  manifest used to validate a local experiment file (default: the reference fleet)
Exit codes: 0 passed (or dry run), 1 failed or aborted, 2 invalid experiment or usage.`;

interface ListedExperiment {
  name: string;
  file: string;
  description?: string;
  faults?: string[];
  sloMs?: number;
  error?: string;
}

async function list(values: { nats?: string; json?: boolean; fleet?: string }): Promise<number> {
  const rows = await withBus(values, async (bus, config) => {
    try {
      return await command<ListedExperiment[]>(bus, 'chaos.list', {}, 5000);
    } catch (e) {
      if (!isHomeostatError(e, 'HOMEOSTAT_ERR_TIMEOUT')) throw e;
      return listExperiments(loadFleetForCli(values.fleet, config)).map((x) => ({
        name: x.name, file: x.file, ...(x.error ? { error: x.error } : {}),
        ...(x.experiment ? { description: x.experiment.description, faults: x.experiment.method.map((m) => `${m.fault} ${m.target}`), sloMs: x.experiment.slo.mttrMs } : {}),
      }));
    }
  });
  if (values.json) {
    printJson(rows);
    return 0;
  }
  // descriptions wrap at word boundaries to the terminal's width (80 when not a terminal), never cut
  const lead = Math.max(4, ...rows.map((r) => r.name.length)) + Math.max(6, ...rows.map((r) => (r.faults?.join(', ') ?? '').length)) + 12;
  const width = Math.max(30, (process.stdout.columns || 100) - lead);
  const lines: string[][] = [];
  for (const r of rows) {
    const text = wrap(r.error ? `invalid: ${r.error}` : (r.description ?? ''), width).map((l) => (r.error ? paint(l, 'red') : l));
    lines.push([r.name, r.faults?.join(', ') ?? '', r.sloMs ? `${r.sloMs / 1000} s` : '', text[0]]);
    for (const more of text.slice(1)) lines.push(['', '', '', more]);
  }
  println(table([['NAME', 'FAULTS', 'SLO', 'DESCRIPTION'], ...lines]));
  return rows.some((r) => r.error) ? 1 : 0;
}

export async function chaosMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, {
    ...COMMON_OPTIONS, ...YES_FLAG, 'dry-run': { type: 'boolean', default: false }, 'no-wait': { type: 'boolean', default: false }, fleet: { type: 'string' },
  });
  const [sub, target, ...extra] = positionals;
  if (values.help || !sub) {
    println(HELP);
    return values.help ? 0 : 2;
  }
  if (sub === 'list') return list(values);
  if (sub !== 'run') throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `unknown chaos subcommand ${JSON.stringify(sub)}; expected list or run`);
  if (!target || extra.length) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', 'expected one experiment: `homeostat chaos run <name|file.yaml>` (see `homeostat chaos list`)');
  const args: Record<string, unknown> = { ...(values['dry-run'] ? { dryRun: true } : {}) };
  if (/[/\\]|\.ya?ml$/.test(target)) {
    // a local file: validated here, so a bad field is reported before anything is sent
    const experiment = loadExperimentFile(target, loadFleetForCli(values.fleet, loadConfig(process.env, { NATS_URL: values.nats })));
    Object.assign(args, { name: basename(target), experiment });
  } else {
    args.name = target;
  }
  const confirm = values['dry-run'] ? undefined : confirmByDryRun(`chaos experiment ${String(args.name)}`, 'chaos.run', args, values.yes);
  return runAndFollow('chaos.run', args, values, async (r, _reply, events, _board, bus) => {
    const report = r.output as ChaosReport | { error?: string } | undefined;
    // the experiment's own steps, and what homeostat did in between (incidents, decisions, actions)
    const own = chaosTimeline(events);
    const t0 = events.length ? Date.parse(events[0].env.ts) : Date.now();
    const t1 = events.length ? Date.parse(events[events.length - 1].env.ts) : Date.now();
    const healing = await healingTimeline(bus, r.workflowId, new Date(t0), new Date(t1), t0).catch(() => []);
    const timeline = [...own, ...healing].sort((a, b) => a.offsetMs - b.offsetMs);
    if (!report || !('faults' in report)) return { text: paint(`chaos ${r.workflowId}: ${r.status}${report?.error ? ` — ${report.error}` : ''}`, 'red'), json: { timeline } };
    return { text: renderChaosReport(report, timeline, (t, c) => paint(t, c)), json: { timeline } };
  }, { board: false, confirm });
}
