// `homeostat <command>`: dispatch, --help, and the one place errors become exit codes.
import { describeError, HomeostatError } from '../core/mod.ts';

type CommandMain = (argv: string[]) => Promise<number>;

interface CommandEntry {
  summary: string;
  load: () => Promise<CommandMain>;
}

export const COMMANDS: Record<string, CommandEntry> = {
  up: { summary: 'run nats-server (embedded), the simulator (--sim) and all agents', load: async () => (await import('./commands/up.ts')).upMain },
  init: { summary: 'write identities, trusted keys and nats-server auth for separate processes; with --nats, create the streams', load: async () => (await import('./commands/init.ts')).initMain },
  sim: { summary: 'run the PVE-API simulator alone', load: async () => (await import('./commands/sim.ts')).simMain },
  agent: { summary: 'run one agent: sensing|analysis|decision|action|operator|workflows', load: async () => (await import('./commands/agent.ts')).agentMain },
  status: { summary: 'nodes, guests by layer, incidents, pending approvals', load: async () => (await import('./commands/status.ts')).statusMain },
  doctor: { summary: 'self-check: agents alive, last poll, consumer lag, dead letters, PVE and advisor reachability, clock skew', load: async () => (await import('./commands/doctor.ts')).doctorMain },
  events: { summary: 'subscribe to fleet events (--since replays history)', load: async () => (await import('./commands/events.ts')).eventsMain },
  incidents: { summary: 'list incidents (open first)', load: async () => (await import('./commands/incidents.ts')).incidentsMain },
  trace: { summary: 'the causal chain of an incident: event → alert → incident → decision → action → task', load: async () => (await import('./commands/trace.ts')).traceMain },
  boot: { summary: 'layered boot of the fleet in dependency order', load: async () => (await import('./commands/workflow.ts')).bootMain },
  shutdown: { summary: 'graceful shutdown in reverse dependency order', load: async () => (await import('./commands/workflow.ts')).shutdownMain },
  failover: { summary: 'fence a node and recover its guests elsewhere', load: async () => (await import('./commands/workflow.ts')).failoverMain },
  chaos: { summary: 'chaos experiments: `chaos list`, `chaos run <name>`', load: async () => (await import('./commands/chaos.ts')).chaosMain },
  chat: { summary: 'ask the fleet a question, or give a command, in plain language', load: async () => (await import('./commands/chat.ts')).chatMain },
  approve: { summary: 'approve a pending action', load: async () => (await import('./commands/approvals.ts')).approveMain },
  deny: { summary: 'deny a pending action', load: async () => (await import('./commands/approvals.ts')).denyMain },
  console: { summary: 'serve the web console (fleet board, incidents, approvals, chat, workflows) alone', load: async () => (await import('./commands/console.ts')).consoleMain },
  start: { summary: 'start a guest (an operator proposal through the policy gate)', load: async () => (await import('./commands/operate.ts')).guestActionMain('start') },
  stop: { summary: 'shut a guest down and keep it down (through the policy gate)', load: async () => (await import('./commands/operate.ts')).guestActionMain('stop') },
  reboot: { summary: 'reboot a guest (through the policy gate)', load: async () => (await import('./commands/operate.ts')).guestActionMain('reboot') },
  maintenance: { summary: 'maintenance on|off <vmid|node>: homeostat leaves it alone', load: async () => (await import('./commands/operate.ts')).maintenanceMain },
  workflows: { summary: 'workflows list: boot, shutdown, failover and chaos runs', load: async () => (await import('./commands/operate.ts')).workflowsMain },
  watch: { summary: 'follow a workflow until it ends', load: async () => (await import('./commands/operate.ts')).watchMain },
  cancel: { summary: 'cancel a workflow: chaos rolls back; boot/shutdown start nothing more (in-flight guests finish)', load: async () => (await import('./commands/operate.ts')).cancelMain },
  fault: { summary: 'inject a fault into the twin: fault <kind> <target>, fault list, fault clear [id]', load: async () => (await import('./commands/fault.ts')).faultMain },
  fleet: { summary: 'fleet validate FILE (every problem at once), fleet import [--out FILE] (a manifest from a cluster)', load: async () => (await import('./commands/fleet.ts')).fleetMain },
  ack: { summary: 'acknowledge an incident: you have it, notifications about it stop repeating', load: async () => (await import('./commands/respond.ts')).ackMain },
  resolve: { summary: 'close an incident by hand: resolve <id> --reason TEXT', load: async () => (await import('./commands/respond.ts')).resolveMain },
  silence: { summary: 'no notifications about a guest or node for a while: silence <vmid|node> <duration>, silence list, silence clear <id>', load: async () => (await import('./commands/respond.ts')).silenceMain },
  release: { summary: 'clear a flap hold-down on a guest', load: async () => (await import('./commands/approvals.ts')).releaseMain },
};

export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return [
    'homeostat — self-healing for Proxmox VE fleets',
    '',
    'Usage: homeostat <command> [flags]      (homeostat <command> --help for its flags)',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([k, v]) => `  ${k.padEnd(width)}  ${v.summary}`),
    '',
    'Client commands take --nats URL (default $NATS_URL, then nats://127.0.0.1:4222) and --json.',
    'Config by env: NATS_URL PVE_URL PVE_TOKEN_ID PVE_TOKEN_SECRET PVE_CA_FILE PVE_INSECURE OLLAMA_HOST OLLAMA_MODEL LOG_LEVEL HOMEOSTAT_FLEET',
    'Exit codes: 0 ok, 1 the operation failed, 2 usage or config error.',
  ].join('\n');
}

/** `homeostat events | head`: the reader went away; that is the end of the output, not an error. */
function quietOnBrokenPipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(0);
      throw e;
    });
  }
}

export async function main(argv: string[]): Promise<number> {
  quietOnBrokenPipe();
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${usage()}\n`);
    return name ? 0 : argv.length === 0 ? 0 : 0;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write('homeostat 0.1.0\n');
    return 0;
  }
  const entry = COMMANDS[name];
  if (!entry) {
    process.stderr.write(`homeostat: unknown command ${JSON.stringify(name)}; see \`homeostat --help\`\n`);
    return 2;
  }
  try {
    const run = await entry.load();
    const code = await run(rest);
    if (SERVERS.has(name)) exitIfLingering(name, code);
    return code;
  } catch (e) {
    process.stderr.write(`homeostat ${name}: ${describeError(e)}\n`);
    return exitCodeFor(e);
  }
}

/** Commands that run until stopped (SIGTERM): once stopped, nothing may keep the process alive. */
const SERVERS = new Set(['up', 'agent', 'sim', 'console']);
const LINGER_MS = 1500;

/** Everything was stopped; a handle a library left open (a socket, a timer) must not keep a
 *  stopped process alive, or a supervisor waits for it and then kills it. The timer is unref'd:
 *  it only fires when something else still holds the event loop. */
function exitIfLingering(name: string, code: number): void {
  setTimeout(() => {
    const open = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap');
    process.stderr.write(`homeostat ${name}: stopped, but ${open.join(', ') || 'a handle'} still open after ${LINGER_MS} ms; exiting\n`);
    process.exit(code);
  }, LINGER_MS).unref();
}

export function exitCodeFor(e: unknown): number {
  if (e instanceof HomeostatError) {
    return ['HOMEOSTAT_ERR_USAGE', 'HOMEOSTAT_ERR_CONFIG', 'HOMEOSTAT_ERR_MANIFEST', 'HOMEOSTAT_ERR_EXPERIMENT', 'HOMEOSTAT_ERR_DATA_DIR_IN_USE', 'HOMEOSTAT_ERR_PORT_IN_USE', 'HOMEOSTAT_ERR_NOT_CONFIRMED', 'HOMEOSTAT_ERR_AMBIGUOUS'].includes(e.code) ? 2 : 1;
  }
  return 1;
}
