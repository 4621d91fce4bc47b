// `homeostat up`: the embedded default. One JSON ready line on stdout; Ctrl-C stops everything it started.
import { resolve } from 'node:path';
import { referenceFleet } from '../../fleet/reference-fleet.ts';
import { loadFleetFile } from '../../fleet/manifest.ts';
import { createLogger, HomeostatError } from '../../core/mod.ts';
import { createMetrics, loadConfig, isAgentName, AGENT_NAMES, type AgentName } from '../../agents/mod.ts';
import { parseCommand, parseIntFlag } from '../args.ts';
import { println, printJson } from '../output.ts';
import { startStack } from '../stack.ts';
import { startMetricsServer } from '../metrics-server.ts';
import { mergedMetrics } from '../metrics-merge.ts';
import { checkConsoleAccess, openConsole } from '../console/mod.ts';
import { waitForShutdownSignal } from '../signals.ts';
import { guardProcess } from '../crash-guard.ts';
import { checkPorts, claimDataDir, DEFAULT_DATA_DIR } from '../data-dir.ts';

const HELP = `Usage: homeostat up [--sim] [--fleet FILE] [--nats URL] [--data-dir DIR] [--nats-port N] [--sim-port N] [--http] [--agents LIST] [--alertmanager-port N|off] [--metrics-port N|off] [--console-port N|off] [--console-host H] [--console-token T] [--keep-state]
                    [--nats-cluster N] [--replicas N]

Runs homeostat in one process: its own nats-server -js (unless --nats), the PVE-API simulator
(with --sim) and all agents. Prints one JSON line on stdout when ready:
  {"ready":true,"natsUrl":...,"natsCreds":...,"pveUrl":...,"pveTokenId":...,"pveTokenSecret":...,"fingerprint":...}
The embedded nats-server runs with authentication on: one identity per agent and "operator" for
the CLI, as nkey seed files in <data-dir>/creds/ (natsCreds is the operator's). Client commands
find it there from the same directory, or take NATS_CREDS / --creds. A real PVE's token secret is
never printed.
Ctrl-C / SIGTERM stops everything it started (and nothing else).

  --sim            start the PVE-API simulator on the fleet (HTTPS, self-signed; --http for plain HTTP).
                   The twin starts fresh, so the current-state KV buckets (fleet-state, incidents,
                   locks, workflows) are cleared at start; the event history is kept (--keep-state
                   keeps the buckets too)
  --fleet FILE     fleet manifest (YAML/JSON); default $HOMEOSTAT_FLEET, else the reference fleet
  --nats URL       use this NATS server instead of starting one
  --data-dir DIR   where the embedded nats-server keeps its store and creds/ (default ./.homeostat). One
                   \`up\` per directory: a second one refuses, naming the first one's pid. The
                   ready line is also written to DIR/ready.json (mode 600), which client commands
                   read when neither --nats nor NATS_URL is given
  --nats-port N    port for the embedded nats-server (default 4222; 0 = a free port)
  --sim-port N     simulator port (default 8006; 0 = a free port)
  --alertmanager-port N  sensing's webhook receiver: Alertmanager (POST /api/v2/alerts or a
                   webhook_config url) and PVE hookscripts (POST /pve/hook, deploy/pve/homeostat-hook);
                   default 9095, 0 = a free port, off = do not listen. With --sim every simulated
                   guest runs that hookscript, reporting here (push detection; polling stays)
  --nats-cluster N start N local nats-servers (N >= 3) joined by routes, JetStream on each; every
                   stream and bucket gets 3 replicas, so losing one server loses nothing. The ready
                   line lists natsServers [{url,pid}]; natsUrl is their comma-separated URLs
                   (every client command accepts it). Stores in <data-dir>/nats-1..N
  --replicas N     run every agent as N separate processes (plain node, \`homeostat agent\`)
                   instead of inside this one; the ready line lists processes [{agent,pid}]. A
                   process that dies is started again; the others carry on meanwhile
  --metrics-port N Prometheus metrics of every agent on http://127.0.0.1:N/metrics (default 9464;
                   0 = a free port, off = none); the ready line names it as metricsUrl. With
                   --replicas, each agent process serves its own on a free loopback port and this
                   endpoint merges them (sums; homeostat_pve_up and other states: the max)
  --console-port N the web console on http://127.0.0.1:N/ (default 8080; 0 = a free port, off =
                   none); the ready line names it as consoleUrl
  --console-host H address for the console (default 127.0.0.1); anything but loopback needs
                   --console-token T (or $HOMEOSTAT_CONSOLE_TOKEN), at least 16 characters
  --agents LIST    comma-separated subset of ${AGENT_NAMES.join(',')} (default all)
Without --sim, the PVE API comes from PVE_URL / PVE_TOKEN_ID / PVE_TOKEN_SECRET (see README).`;

export async function upMain(argv: string[]): Promise<number> {
  const { values } = parseCommand(argv, {
    sim: { type: 'boolean', default: false },
    fleet: { type: 'string' },
    nats: { type: 'string' },
    'data-dir': { type: 'string', default: process.env.HOMEOSTAT_DATA_DIR || DEFAULT_DATA_DIR },
    'nats-port': { type: 'string' },
    'sim-port': { type: 'string' },
    'time-scale': { type: 'string' },
    http: { type: 'boolean', default: false },
    agents: { type: 'string' },
    'keep-state': { type: 'boolean', default: false },
    'alertmanager-port': { type: 'string', default: '9095' },
    'nats-cluster': { type: 'string' },
    replicas: { type: 'string' },
    'metrics-port': { type: 'string', default: '9464' },
    'console-port': { type: 'string', default: '8080' },
    'console-host': { type: 'string', default: '127.0.0.1' },
    'console-token': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  }, false);
  if (values.help) {
    println(HELP);
    return 0;
  }
  const config = loadConfig(process.env, { NATS_URL: values.nats });
  const natsPort = parseIntFlag('nats-port', values['nats-port']);
  const simPort = parseIntFlag('sim-port', values['sim-port']);
  const timeScale = values['time-scale'] === undefined ? undefined : Number(values['time-scale']);
  if (timeScale !== undefined && !(timeScale > 0 && timeScale <= 100)) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `--time-scale: expected a number in (0, 100], got ${values['time-scale']}`);
  const agents = values.agents?.split(',').map((s) => s.trim()).filter(Boolean);
  for (const a of agents ?? []) if (!isAgentName(a)) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `--agents: unknown agent ${JSON.stringify(a)}; expected ${AGENT_NAMES.join(',')}`);
  const alertmanagerPort = values['alertmanager-port'] === 'off' ? undefined : parseIntFlag('alertmanager-port', values['alertmanager-port']);
  const natsCluster = parseIntFlag('nats-cluster', values['nats-cluster'], 1, 9);
  if (natsCluster !== undefined && natsCluster > 1 && natsCluster < 3) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `--nats-cluster: JetStream replication needs at least 3 servers, got ${natsCluster}`);
  if (natsCluster !== undefined && values.nats) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', '--nats-cluster starts its own servers; it cannot be combined with --nats');
  const replicas = parseIntFlag('replicas', values.replicas, 1, 16);
  const metricsPort = values['metrics-port'] === 'off' ? undefined : parseIntFlag('metrics-port', values['metrics-port']);
  const consolePort = values['console-port'] === 'off' ? undefined : parseIntFlag('console-port', values['console-port']);
  const consoleToken = values['console-token'] ?? (process.env.HOMEOSTAT_CONSOLE_TOKEN || undefined);
  if (consolePort !== undefined) checkConsoleAccess(values['console-host'], consoleToken);
  const fleetFile = values.fleet ?? config.HOMEOSTAT_FLEET;
  const fleet = fleetFile ? loadFleetFile(fleetFile) : referenceFleet();
  const log = createLogger(config.LOG_LEVEL);
  // Nothing starts before the data directory is ours and every fixed port is free: a second
  // stack on the same store would silently break the first one.
  const dataDir = claimDataDir(values['data-dir']);
  try {
    await checkPorts([
      ...(values.nats ? [] : [{ flag: '--nats-port', what: 'NATS', port: natsPort ?? 4222 }]),
      ...(values.sim ? [{ flag: '--sim-port', what: 'simulator', port: simPort ?? 8006 }] : []),
      { flag: '--alertmanager-port', what: 'Alertmanager receiver', port: alertmanagerPort },
      { flag: '--metrics-port', what: 'metrics', port: metricsPort },
      { flag: '--console-port', what: 'console', port: consolePort, host: values['console-host'] },
    ]);
    return await runStack();
  } finally {
    dataDir.release();
  }

  async function runStack(): Promise<number> {
    // listen before start-up: a Ctrl-C during start must still stop what was started
    const signalled = waitForShutdownSignal();
    // a rejection nobody handled (a library's timer during a NATS outage) is one log line, not the end
    const guard = guardProcess(log);
    const metrics = createMetrics();
    // with --replicas the agents run in their own processes: /metrics merges theirs with this one's
    let agentMetrics = (): string[] => [];
    const metricsServer = metricsPort === undefined ? undefined : await startMetricsServer({ registry: replicas ? mergedMetrics(metrics.registry, () => agentMetrics()) : metrics.registry, port: metricsPort });

    const stack = await startStack({
      metrics,
      config,
      fleet,
      log,
      natsUrl: values.nats,
      dataDir: dataDir.dir,
      natsPort,
      natsCluster,
      replicas,
      // the Alertmanager receiver is one port: sensing's first replica listens on it
      agentArgs: (agent, replica) => (agent === 'sensing' && replica === 1 && alertmanagerPort !== undefined ? ['--alertmanager-port', String(alertmanagerPort)] : []),
      ...(fleetFile ? { fleetFile } : {}),
      sim: values.sim ? { port: simPort, http: values.http, timeScale, keepState: values['keep-state'], hooks: alertmanagerPort !== undefined } : undefined,
      agents: agents as AgentName[] | undefined,
      options: { sensing: alertmanagerPort === undefined ? {} : { alertmanagerPort } },
    }).catch(async (e: unknown) => {
      await metricsServer?.close();
      throw e;
    });
    agentMetrics = () => stack.processes?.list().flatMap((p) => (p.metricsUrl ? [p.metricsUrl] : [])) ?? [];
    const consoleServer = consolePort === undefined ? undefined : await openConsole({
      natsUrl: stack.natsUrl, fleet, log: log.child({ agent: 'console' }), port: consolePort, host: values['console-host'], token: consoleToken,
      // the console acts as the operator: approvals and commands under the operator's identity
      connect: { seed: stack.natsCreds ? stack.keyring.get('operator').seed : undefined, caFile: config.NATS_CA },
      signer: stack.keyring.get('operator').signer,
    }).catch(async (e: unknown) => {
      await stack.stop();
      await metricsServer?.close();
      throw e;
    });
    const amPort = replicas ? alertmanagerPort : (stack.agents.get('sensing') as { alertmanagerPort?: number } | undefined)?.alertmanagerPort;
    const ready = {
      ready: true,
      natsUrl: stack.natsUrl,
      ...(stack.natsCreds ? { natsCreds: resolve(stack.natsCreds) } : {}),
      // the simulator's token is made up for it; a real PVE's secret never goes into a ready line
      ...(stack.pveUrl ? { pveUrl: stack.pveUrl, pveTokenId: stack.pveTokenId, pveTokenSecret: stack.sim ? stack.pveTokenSecret : '(PVE_TOKEN_SECRET, not shown)' } : {}),
      ...(stack.fingerprint ? { fingerprint: stack.fingerprint } : {}),
      ...(amPort !== undefined ? { alertmanagerUrl: `http://127.0.0.1:${amPort}/api/v2/alerts`, hookUrl: `http://127.0.0.1:${amPort}/pve/hook` } : {}),
      ...(metricsServer ? { metricsUrl: metricsServer.url } : {}),
      ...(consoleServer ? { consoleUrl: consoleServer.url } : {}),
      fleet: fleet.name,
      guests: fleet.guests.length,
      agents: stack.processes ? [...new Set(stack.processes.list().map((p) => p.agent))] : [...stack.agents.keys()],
      ...(natsCluster && natsCluster > 1 ? { natsServers: stack.natsServers } : {}),
      ...(stack.processes ? { processes: stack.processes.list().map(({ agent, pid }) => ({ agent, pid })) } : {}),
      dataDir: dataDir.dir,
    };
    // the file (mode 600) also keeps the simulator's CA, so `homeostat fault` can verify it
    dataDir.writeReady({ ...ready, ...(stack.sim?.caPem ? { pveCaPem: stack.sim.caPem } : {}) });
    printJson(ready);
    const reason = await Promise.race([signalled, guard.fatal]);
    log.info({ signal: reason instanceof Error ? 'fatal error' : reason }, 'stopping');
    await consoleServer?.close();
    await stack.stop();
    await metricsServer?.close();
    guard.dispose();
    return reason instanceof Error ? 1 : 0;
  }
}
