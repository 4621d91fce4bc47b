// `homeostat boot | shutdown | failover`: ask the workflows agent to start the workflow, then follow
// it live to the end (a board on a TTY, a line per event otherwise, JSON lines with --json).
// Exit 0 when it succeeded, 1 when it failed (failed/held/stuck guests, an aborted failover).
import { HomeostatError } from '../../core/mod.ts';
import { type Bus } from '../../bus/mod.ts';
import {
  followWorkflow, renderPlan, renderResult, startWorkflow, waitingAfter, WorkflowBoard,
  type FollowedEvent, type StartReply, type WorkflowResult,
} from '../../workflows/mod.ts';
import { COMMON_OPTIONS, parseCommand, parseIntFlag } from '../args.ts';
import { command, withBus } from '../client.ts';
import { confirmPlan, requireConfirmable, YES_FLAG } from '../confirm.ts';
import type { FleetStatus } from '../../agents/operator/mod.ts';
import { paint, printJson, println, useColor } from '../output.ts';

const FOLLOW_FLAGS = `  --yes, -y     do not ask: without it the plan is shown and confirmed on a terminal, and the
                command refuses when stdin is not a terminal
  --no-wait     print the workflow id and return; it runs on in the workflows agent
  --json        one JSON line per workflow event, then {"result":…,"status":…,"exitCode":…}
  --nats URL    NATS server (default $NATS_URL, then nats://127.0.0.1:4222)
Exit codes: 0 succeeded, 1 failed (or stopped following before the end), 2 usage error.`;

const BOOT_HELP = `Usage: homeostat boot [--layer N] [--dry-run] [--yes] [--no-wait] [--json] [--nats URL]

Layered boot across the cluster: each guest starts as soon as everything it depends on is healthy
(the manifest's dependsOn, else the layer below), within the per-node concurrency policy; a guest
is up only when its health check passes. A guest that fails after its retries holds its dependents;
everything else still boots. Guests already healthy are skipped.

  --layer N     boot only layer N (its dependencies in other layers must already be healthy)
  --dry-run     print the plan (waves) without starting anything
${FOLLOW_FLAGS}`;

const SHUTDOWN_HELP = `Usage: homeostat shutdown [--layer N] [--include-protected] [--dry-run] [--yes] [--no-wait] [--json] [--nats URL]

Graceful shutdown in reverse dependency order: a guest is shut down only once everything that
depends on it is down; PVE shutdown with the policy's timeout, then a hard stop only if the policy
allows it. Sets each guest's desired state to stopped first, so self-healing leaves them down.

  --layer N     shut down only layer N (a guest whose dependents elsewhere still run is held)
  --include-protected
                shut down protected guests too (and what they depend on): each one's shutdown
                goes through the policy gate and waits for \`homeostat approve <id>\`; without
                it they are left running
  --dry-run     print the plan (waves) without stopping anything
${FOLLOW_FLAGS}`;

const FAILOVER_HELP = `Usage: homeostat failover <node> [--yes] [--no-wait] [--json] [--nats URL]

Confirm <node> is really gone (its API unreachable for the fence delay and /cluster/status shows
it offline, with quorum), fence it, then recover its guests on the surviving nodes in dependency
order, respecting capacity, and verify they are healthy and run exactly once. Against real PVE,
recovery is PVE HA's (see docs/workflows.md). A failover already running for <node> is followed.
${FOLLOW_FLAGS}`;

const FLAGS = { ...COMMON_OPTIONS, ...YES_FLAG, 'no-wait': { type: 'boolean', default: false } } as const;
const POWER_FLAGS = { ...FLAGS, layer: { type: 'string' }, 'dry-run': { type: 'boolean', default: false } } as const;
const SHUTDOWN_FLAGS = { ...POWER_FLAGS, 'include-protected': { type: 'boolean', default: false } } as const;

type Shown = { text: string; json?: Record<string, unknown> };

export interface FollowPrinter {
  onEvent(ev: FollowedEvent): void;
  done(): void;
}

/** How events reach the terminal: JSON lines, a redrawn board (TTY), or one line per event. */
export function printer(reply: StartReply, opts: { json: boolean; board: boolean }): FollowPrinter & { board: WorkflowBoard } {
  const color = useColor();
  const b = new WorkflowBoard(reply, (t, c) => paint(t, c, color));
  let drawn = 0;
  let timer: NodeJS.Timeout | undefined;
  const live = opts.board && !opts.json && Boolean(process.stdout.isTTY);
  const draw = () => {
    timer = undefined;
    const lines = b.board();
    process.stdout.write(`${drawn ? `\x1b[${drawn}A\r\x1b[J` : ''}${lines.join('\n')}\n`);
    drawn = lines.length;
  };
  const tick = live ? setInterval(draw, 500) : undefined;
  if (live) draw();
  return {
    board: b,
    onEvent(ev) {
      b.apply(ev.env.data);
      if (opts.json) printJson({ subject: ev.subject, ...ev.env });
      else if (live) timer ??= setTimeout(draw, 80);
      else println(b.line(ev.env.data, ev.env.ts));
    },
    done() {
      if (tick) clearInterval(tick);
      if (timer) clearTimeout(timer);
      if (live) draw();
    },
  };
}

/** Start a workflow and follow it; `show` prints the end result. Returns the exit code. */
export async function runAndFollow(
  verb: string,
  args: Record<string, unknown>,
  values: { nats?: string; json?: boolean; 'no-wait'?: boolean },
  show: (r: WorkflowResult, reply: StartReply, events: FollowedEvent[], board: WorkflowBoard, bus: Bus) => Promise<Shown> | Shown,
  opts: { board: boolean; confirm?: (bus: Bus) => Promise<void> },
): Promise<number> {
  return withBus(values, async (bus) => {
    await opts.confirm?.(bus);
    const { reply, requestedAt } = await startWorkflow(bus, verb, args, `cli:${process.env.USER ?? 'operator'}`);
    if (reply.dryRun) {
      if (values.json) printJson(reply);
      else println(renderPlan(reply, (t, c) => paint(t, c)));
      return 0;
    }
    if (values['no-wait']) {
      if (values.json) printJson(reply);
      else println(`${reply.kind} ${reply.workflowId}${reply.existing ? ' (already running)' : ''} started; follow it with \`homeostat events --subject 'fleet.workflows.${reply.kind}.${reply.workflowId}.>'\``);
      return 0;
    }
    if (!values.json && reply.existing) println(paint(`a ${reply.kind} of ${reply.node} is already running: following ${reply.workflowId}`, 'yellow'));
    const out = printer(reply, { json: values.json ?? false, board: opts.board });
    const events: FollowedEvent[] = [];
    const ac = new AbortController();
    const onSignal = () => ac.abort();
    // a quiet stretch says what it waits for (a line on stderr every 10 s without an event)
    let lastAt = Date.now();
    const quiet = values.json || (opts.board && process.stdout.isTTY) ? undefined : setInterval(() => {
      const last = events.at(-1);
      const what = last ? waitingAfter(last.env.data, (v: number) => out.board.name(v)) : 'waiting for the workflow to start';
      if (Date.now() - lastAt >= 10_000) process.stderr.write(`${paint(`  … ${Math.round((Date.now() - (events[0] ? Date.parse(events[0].env.ts) : lastAt)) / 1000)} s${what ? `, ${what}` : ''}`, 'gray', useColor(process.stderr))}\n`);
    }, 10_000);
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    let result: WorkflowResult | undefined;
    try {
      const since = reply.existing ? new Date(Math.min(requestedAt.getTime(), Date.parse(reply.startedAt) || requestedAt.getTime())) : requestedAt;
      result = await followWorkflow(bus, {
        kind: reply.kind, workflowId: reply.workflowId, since, signal: ac.signal,
        onEvent: (ev) => {
          lastAt = Date.now();
          events.push(ev);
          out.onEvent(ev);
        },
        onSilence: (m) => process.stderr.write(`${paint(m, 'yellow')}\n`),
      }).catch((e: unknown) => {
        if (ac.signal.aborted) return undefined; // Ctrl-C: the operator stopped watching, not a timeout
        throw e;
      });
    } finally {
      if (quiet) clearInterval(quiet);
      out.done();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    if (!result) {
      process.stderr.write(`stopped following ${reply.workflowId}; it keeps running in the workflows agent (\`homeostat watch ${reply.workflowId}\` to follow it again, \`homeostat cancel ${reply.workflowId}\` to stop it)\n`);
      return 130;
    }
    const code = result.status === 'done' ? 0 : 1;
    const shown = await show(result, reply, events, out.board, bus);
    if (values.json) printJson({ workflowId: result.workflowId, kind: result.kind, status: result.status, exitCode: code, result: result.output, ...(shown.json ?? {}) });
    else println(shown.text);
    return code;
  });
}

const summary = (r: WorkflowResult, _reply: StartReply, _events: FollowedEvent[], board: WorkflowBoard) => ({ text: renderResult(r, board, (t, c) => paint(t, c)) });

/** The dry run of the same request is the plan the operator confirms. */
export function confirmByDryRun(what: string, verb: string, args: Record<string, unknown>, yes: boolean) {
  requireConfirmable(what, yes);
  return async (bus: Bus) => {
    if (yes) return;
    const { reply } = await startWorkflow(bus, verb, { ...args, dryRun: true }, `cli:${process.env.USER ?? 'operator'}`);
    await confirmPlan(what, renderPlan(reply, (t, c) => paint(t, c, useColor(process.stderr))).replace(' (dry run, nothing was done)', ''), yes);
  };
}

function powerMain(kind: 'boot' | 'shutdown', help: string) {
  return async (argv: string[]): Promise<number> => {
    const { values } = parseCommand(argv, SHUTDOWN_FLAGS, false);
    if (values.help) {
      println(help);
      return 0;
    }
    if (kind === 'boot' && values['include-protected']) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', '--include-protected is a shutdown flag');
    const layer = parseIntFlag('layer', values.layer, 1, 1_000_000);
    const args = { ...(layer !== undefined ? { layer } : {}), ...(values['include-protected'] ? { includeProtected: true } : {}) };
    if (values['dry-run']) return runAndFollow(kind, { ...args, dryRun: true }, values, summary, { board: true });
    const what = `${kind} of ${layer === undefined ? 'the whole fleet' : `layer ${layer}`}`;
    return runAndFollow(kind, args, values, summary, { board: true, confirm: confirmByDryRun(what, kind, args, values.yes) });
  };
}

export const bootMain = powerMain('boot', BOOT_HELP);
export const shutdownMain = powerMain('shutdown', SHUTDOWN_HELP);

export async function failoverMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, FLAGS);
  if (values.help) {
    println(FAILOVER_HELP);
    return 0;
  }
  if (positionals.length !== 1) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', 'expected one node name, e.g. `homeostat failover node-b`');
  const node = positionals[0];
  requireConfirmable(`failover of ${node}`, values.yes);
  const confirm = async (bus: Bus) => {
    if (values.yes) return;
    const s = await command<FleetStatus>(bus, 'status', {}, 5000).catch(() => undefined);
    const here = s?.guests.filter((g) => g.node === node) ?? [];
    const plan = [
      paint(`failover plan for ${node}`, 'bold'),
      `  confirm ${node} is gone (fence delay, /cluster/status), fence it, then recover on the surviving nodes in dependency order:`,
      `  ${here.length ? here.map((g) => `${g.vmid} ${g.name}${g.protected ? ' (protected)' : ''}`).join(', ') : '(no guests known on it)'}`,
    ].join('\n');
    await confirmPlan(`failover of ${node}`, plan, values.yes);
  };
  return runAndFollow('failover', { node }, values, summary, { board: true, confirm });
}
