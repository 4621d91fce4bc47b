// `homeostat console`: the web console alone, against a running homeostat (NATS).
import { loadConfig } from '../../agents/mod.ts';
import { createLogger } from '../../core/mod.ts';
import { COMMON_OPTIONS, parseCommand, parseIntFlag } from '../args.ts';
import { loadFleetForCli, natsUrlFor, operatorIdentity } from '../client.ts';
import { openConsole } from '../console/mod.ts';
import { println, printJson } from '../output.ts';
import { waitForShutdownSignal } from '../signals.ts';
import { guardProcess } from '../crash-guard.ts';

const HELP = `Usage: homeostat console [--nats URL] [--creds FILE] [--port N] [--host H] [--token T] [--fleet FILE]

Serves the web console: the fleet board (layers × nodes), incidents with their trace, approvals,
the chat, workflows and chaos runs with live progress — live over Server-Sent Events fed from
NATS, offline (no CDN). Prints {"ready":true,"consoleUrl":...} on stdout; Ctrl-C stops it.

  --port N     port (default 8080; 0 = a free port)
  --host H     address to listen on (default 127.0.0.1). Anything but loopback needs a token
  --token T    required token (at least 16 characters; default $HOMEOSTAT_CONSOLE_TOKEN): open
               http://H:N/?token=T once (sets a cookie), or send Authorization: Bearer T
  --nats URL   NATS server (default $NATS_URL, then the running \`up\`, then nats://127.0.0.1:4222)
  --creds FILE the operator's identity (default $NATS_CREDS, then <data-dir>/creds/operator.nk of
               the local \`up\`): approvals and commands from the page are the operator's
  --fleet FILE manifest (for status when the operator agent does not answer)`;

export async function consoleMain(argv: string[]): Promise<number> {
  const { values } = parseCommand(argv, {
    ...COMMON_OPTIONS,
    port: { type: 'string', default: '8080' },
    host: { type: 'string', default: '127.0.0.1' },
    token: { type: 'string' },
    fleet: { type: 'string' },
  }, false);
  if (values.help) {
    println(HELP);
    return 0;
  }
  const config = loadConfig(process.env, { NATS_URL: natsUrlFor(values.nats), NATS_CREDS: values.creds });
  const port = parseIntFlag('port', values.port)!;
  const log = createLogger(config.LOG_LEVEL);
  const signalled = waitForShutdownSignal();
  // long-running too: a rejection nobody handled is one log line, not the end (cli/crash-guard.ts)
  const guard = guardProcess(log);
  const server = await openConsole({
    natsUrl: config.NATS_URL, fleet: loadFleetForCli(values.fleet, config), log, port, host: values.host,
    token: values.token ?? (process.env.HOMEOSTAT_CONSOLE_TOKEN || undefined),
    // as the operator: NATS_CREDS / --creds, else the operator file of the local `up`
    connect: { seed: operatorIdentity(config)?.seed, caFile: config.NATS_CA },
  });
  printJson({ ready: true, consoleUrl: server.url, natsUrl: config.NATS_URL });
  const reason = await Promise.race([signalled, guard.fatal]);
  await server.close();
  guard.dispose();
  return reason instanceof Error ? 1 : 0;
}
