// `homeostat agent <name>`: one agent in its own process (compose runs one per service).
import { hostname } from 'node:os';
import { createLogger, Gate, HomeostatError, sleep, type AppLogger } from '../../core/mod.ts';
import { AGENT_NAMES, createMetrics, loadConfig, type AgentName, type SensingAgentOptions } from '../../agents/mod.ts';
import { acquireLease, BUCKETS, Bus, openKvWithTimeout, readIdentity } from '../../bus/mod.ts';
import { loadFleetFile } from '../../fleet/manifest.ts';
import { referenceFleet } from '../../fleet/reference-fleet.ts';
import { parseCommand, parseIntFlag } from '../args.ts';
import { println, printJson } from '../output.ts';
import { waitForShutdownSignal } from '../signals.ts';
import { guardProcess } from '../crash-guard.ts';
import { startStack } from '../stack.ts';
import { startMetricsServer } from '../metrics-server.ts';
import { isAgentName } from '../../agents/mod.ts';

const HELP = `Usage: homeostat agent <${AGENT_NAMES.join('|')}> [--nats URL] [--fleet FILE]

Runs one agent against an existing NATS server (NATS_URL or --nats); PVE from PVE_URL etc.
Its identity comes from NATS_CREDS (an nkey seed file); the action agent trusts the decision
agent's key from HOMEOSTAT_DECISION_KEYS, the decision agent the operators' keys from
HOMEOSTAT_OPERATOR_KEYS, or both from HOMEOSTAT_TRUST_FILE (\`homeostat init\` writes all of them;
see docs/security.md).
Prints {"ready":true,"agent":...} on stdout; SIGINT/SIGTERM drain and exit 0.

Replicated (HOMEOSTAT_REPLICA set, as \`up --replicas N\` does): sensing replicas divide the PVE nodes
between them (a lease per node in KV; a dead replica's nodes are taken over within ~5 s, lease
4 s). Analysis and workflows are singletons with a lease in KV: one replica is active, the others
wait (ready line "role":"standby") and take over within ~5 s when the active one dies. An active
replica that cannot renew its lease (NATS electing a leader) pauses: analysis keeps its state and
holds its outputs, workflows stops; it carries on when it renews the lease, and waits as a standby
(same process) if another replica took it meanwhile. Decision, action and operator
replicas share their durable consumers and request queues.

  --metrics-port N        serve this agent's Prometheus metrics on http://H:N/metrics (0 = a free port)
  --metrics-host H        the address for metrics (default 127.0.0.1; 0.0.0.0 in containers)
  --alertmanager-port N   sensing only: listen for Alertmanager webhooks on this port (0 = free port)
  --alertmanager-host H   sensing only: the address to listen on (default 127.0.0.1; 0.0.0.0 in containers)`;

export async function agentMain(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, {
    nats: { type: 'string' },
    fleet: { type: 'string' },
    'alertmanager-port': { type: 'string' },
    'alertmanager-host': { type: 'string' },
    'metrics-port': { type: 'string' },
    'metrics-host': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  });
  if (values.help) {
    println(HELP);
    return 0;
  }
  const name = positionals[0];
  if (!name || positionals.length > 1 || !isAgentName(name)) {
    throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `expected one agent name: ${AGENT_NAMES.join('|')}${name ? `, got ${JSON.stringify(name)}` : ''}`);
  }
  const config = loadConfig(process.env, { NATS_URL: values.nats });
  const fleetFile = values.fleet ?? config.HOMEOSTAT_FLEET;
  const fleet = fleetFile ? loadFleetFile(fleetFile) : referenceFleet();
  const log = createLogger(config.LOG_LEVEL);
  const signalled = waitForShutdownSignal();
  // a rejection nobody handled (a library's timer during a NATS outage) is one log line, not the end
  const guard = guardProcess(log);
  const amPort = parseIntFlag('alertmanager-port', values['alertmanager-port']);
  const replicated = process.env.HOMEOSTAT_REPLICA !== undefined;
  const sensing: SensingAgentOptions = amPort === undefined ? {} : { alertmanagerPort: amPort, ...(values['alertmanager-host'] ? { alertmanagerHost: values['alertmanager-host'] } : {}) };
  // replicated sensing divides the nodes between the live replicas (agents/sensing/partition.ts)
  if (replicated && name === 'sensing') sensing.partitionHolder = `${hostname()}:${process.pid}`;
  const standalone = { identity: config.NATS_CREDS ? readIdentity(config.NATS_CREDS) : undefined };
  // before the lease: a standby's process is scraped too (`up --replicas` merges every process's metrics)
  const metricsPort = parseIntFlag('metrics-port', values['metrics-port']);
  const metrics = createMetrics();
  const metricsServer = metricsPort === undefined ? undefined : await startMetricsServer({ registry: metrics.registry, port: metricsPort, host: values['metrics-host'] });
  const metricsAt = metricsServer ? { metricsUrl: metricsServer.url } : {};
  if (replicated && SINGLETONS.has(name)) {
    const leaseBus = await Bus.connect({ servers: config.NATS_URL, source: `${name}-lease`, log, seed: standalone.identity?.seed, caFile: config.NATS_CA });
    printJson({ ready: true, agent: name, natsUrl: config.NATS_URL, role: 'standby', ...metricsAt });
    // a standby analysis keeps a copy of fleet-state warm: taking over, it reads only the incidents
    const warmer = name === 'analysis' ? new (await import('../../agents/analysis/mod.ts')).FleetStateWarmer(leaseBus, log) : undefined;
    const code = await runSingleton({
      name, log, signalled, fatal: guard.fatal, leaseBus, standby: warmer,
      start: (hold) => startStack({ config, fleet, log, natsUrl: config.NATS_URL, agents: [name], options: { sensing, ...(hold ? { analysis: { hold, warm: warmer?.take() } } : {}) }, metrics, standalone }),
    });
    warmer?.stop();
    await leaseBus.stop();
    await metricsServer?.close();
    guard.dispose();
    return code;
  }
  const stack = await startStack({ config, fleet, log, natsUrl: config.NATS_URL, agents: [name], options: { sensing }, metrics, standalone }).catch(async (e: unknown) => {
    await metricsServer?.close();
    throw e;
  });
  printJson({ ready: true, agent: name, natsUrl: config.NATS_URL, ...metricsAt });
  const handle = stack.agents.get(name)!;
  const outcome = await Promise.race([signalled.then(() => 'signal' as const), guard.fatal, handle.stopped.then((r) => r)]);
  await stack.stop();
  await metricsServer?.close();
  guard.dispose();
  return outcome instanceof Error ? 1 : 0;
}

type Stack = Awaited<ReturnType<typeof startStack>>;

/** A singleton replica: standby until it holds the lease, then active. A lease it cannot renew
 *  (a NATS cluster electing the bucket's leader) pauses it: an agent that takes a gate (analysis)
 *  keeps its state and holds its outputs, any other one is stopped; when the lease is renewed
 *  at its own revision (nobody held it in between) it carries on (analysis: the gate opens) or
 *  starts again. A lease another replica took is lost: the agent stops, and this replica waits
 *  as a standby again (same process: no restart, no new connection), re-syncing from KV when it
 *  next holds the lease. Ends (its exit code) on a signal, a fatal error or the agent's own end. */
async function runSingleton(o: { name: string; log: AppLogger; signalled: Promise<unknown>; fatal: Promise<Error>; leaseBus: Bus; start: (hold?: Gate) => Promise<Stack>; standby?: { start(): void; stop(): void } }): Promise<number> {
  const { name, log } = o;
  const abort = new AbortController();
  void o.signalled.then(() => abort.abort());
  const ended = Promise.race([o.signalled.then(() => 'signal' as const), o.fatal]);
  const gated = GATED.has(name);
  // requests that give up after 1 s (the shared handle waits 5 s): a paused holder must come round
  // again quickly when the bucket has a leader again, or a standby gets the lease first
  const kv = await openKvWithTimeout(o.leaseBus.nc, BUCKETS.fleetState, LEASE_KV_TIMEOUT_MS);
  for (;;) {
    // in fleet-state: the one bucket every singleton may write (bus/permissions.ts)
    o.standby?.start();
    const lease = await acquireLease({ kv, name, holder: `${hostname()}:${process.pid}:${name}`, ttlMs: LEASE_TTL_MS, intervalMs: LEASE_RENEW_MS }, abort.signal);
    o.standby?.stop();
    if (!lease) return 0;
    log.info({ agent: name }, 'lease acquired: this replica is active');
    const hold = gated ? new Gate() : undefined;
    // closed the moment the lease pauses, even while the agent is still starting (opened by the loop below)
    if (hold) {
      void (async () => {
        while (lease.state !== 'lost') {
          if ((await lease.changed()) !== 'active') hold.close();
        }
      })();
    }
    let stack: Stack | undefined;
    let paused = false;
    let outcome: 'signal' | 'lost' | Error | void = undefined;
    try {
      for (;;) {
        const state = lease.state;
        if (state === 'lost') {
          outcome = 'lost';
          break;
        }
        if (state === 'paused') {
          if (hold && !paused) log.warn({ agent: name }, 'lease not renewed in time (NATS electing a leader?): paused, outputs held');
          paused = true;
          hold?.close();
          if (!hold && stack) {
            log.warn({ agent: name }, 'lease not renewed in time (NATS electing a leader?): stopping until it is renewed');
            await stack.stop();
            stack = undefined;
          }
        } else {
          if (hold && paused) log.info({ agent: name }, 'lease renewed: active again, outputs resume');
          paused = false;
          hold?.reopen();
          stack ??= await o.start(hold);
        }
        if (lease.state !== state) continue;
        const handle = stack?.agents.get(name as AgentName);
        const r = await Promise.race([ended, lease.changed().then(() => 'changed' as const), ...(handle ? [handle.stopped] : [])]);
        if (r === 'changed') continue;
        outcome = r;
        break;
      }
    } catch (e) {
      // could not start (NATS away): give the lease up and try again as a standby
      log.warn({ agent: name, err: (e as Error).message }, 'could not start the agent; waiting as a standby again');
      outcome = 'lost';
    }
    if (outcome === 'lost') log.warn({ agent: name }, 'lease lost: another replica may be active now; stopping, waiting as a standby');
    // abandon what the outbox still holds (another replica re-derives it from KV)
    await stack?.stop();
    await lease.release();
    if (outcome !== 'lost') return outcome instanceof Error ? 1 : 0;
    await sleep(LEASE_RENEW_MS, abort.signal).catch(() => undefined);
  }
}

/** One active replica at a time: the fleet model (analysis: root causes span guests, nodes and
 *  layers, so one replica holds all of it; the standby rebuilds it from KV when it takes over) and
 *  the runner of persisted workflows (workflows). Sensing is not one: its replicas divide the nodes. */
const SINGLETONS = new Set<string>(['analysis', 'workflows']);
/** Singletons that hold their outputs behind a gate while their lease is paused (state kept). */
const GATED = new Set<string>(['analysis']);
/** Takeover after a SIGKILL: the lease's expiry (4 s) + a grace for its holder (0.5 s) + the
 *  waiting replica's next look (≤ 0.5 s) + its start. The holder pauses after 2 s without a
 *  renewal (a busy start-up on a loaded host stalls the event loop for seconds: a pause there
 *  costs nothing but the held outputs' delay). */
const LEASE_TTL_MS = 4000;
const LEASE_RENEW_MS = 500;
const LEASE_KV_TIMEOUT_MS = 1000;
