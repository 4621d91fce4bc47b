// `homeostat agent <name>`: one agent in its own process (compose runs one per service).
import { createLogger, HomeostatError } from '../../core/mod.ts';
import { readIdentity } from '../../bus/mod.ts';
import { AGENT_NAMES, createMetrics, loadConfig } from '../../agents/mod.ts';
import { loadFleetFile } from '../../fleet/manifest.ts';
import { referenceFleet } from '../../fleet/reference-fleet.ts';
import { parseCommand, parseIntFlag } from '../args.ts';
import { println, printJson } from '../output.ts';
import { waitForShutdownSignal } from '../signals.ts';
import { startStack } from '../stack.ts';
import { startMetricsServer } from '../metrics-server.ts';
import { isAgentName } from '../../agents/mod.ts';

const HELP = `Usage: homeostat agent <${AGENT_NAMES.join('|')}> [--nats URL] [--fleet FILE]

Runs one agent against an existing NATS server (NATS_URL or --nats); PVE from PVE_URL etc.
Its identity comes from NATS_CREDS (an nkey seed file); the action agent trusts the decision
agent's key from HOMEOSTAT_DECISION_KEYS, the decision agent the operators' keys from
HOMEOSTAT_OPERATOR_KEYS (see docs/security.md).
Prints {"ready":true,"agent":...} on stdout; SIGINT/SIGTERM drain and exit 0.

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
  const amPort = parseIntFlag('alertmanager-port', values['alertmanager-port']);
  const services = amPort === undefined ? {} : { alertmanagerPort: amPort, ...(values['alertmanager-host'] ? { alertmanagerHost: values['alertmanager-host'] } : {}) };
  const metricsPort = parseIntFlag('metrics-port', values['metrics-port']);
  const metrics = createMetrics();
  const metricsServer = metricsPort === undefined ? undefined : await startMetricsServer({ registry: metrics.registry, port: metricsPort, host: values['metrics-host'] });
  const standalone = { identity: config.NATS_CREDS ? readIdentity(config.NATS_CREDS) : undefined };
  const stack = await startStack({ config, fleet, log, natsUrl: config.NATS_URL, agents: [name], services, metrics, standalone }).catch(async (e: unknown) => {
    await metricsServer?.close();
    throw e;
  });
  printJson({ ready: true, agent: name, natsUrl: config.NATS_URL, ...(metricsServer ? { metricsUrl: metricsServer.url } : {}) });
  const handle = stack.agents.get(name)!;
  const outcome = await Promise.race([signalled.then(() => 'signal' as const), handle.stopped.then((r) => r)]);
  await stack.stop();
  await metricsServer?.close();
  return outcome instanceof Error ? 1 : 0;
}
