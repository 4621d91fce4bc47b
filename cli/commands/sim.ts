// `homeostat sim`: the PVE-API simulator alone. One JSON ready line on stdout.
import { createLogger, loadConfig } from '../../agents/mod.ts';
import { HomeostatError } from '../../bus/mod.ts';
import { loadFleetFile } from '../../fleet/manifest.ts';
import { referenceFleet } from '../../fleet/reference-fleet.ts';
import { startSimulator } from '../../fleet/twin/mod.ts';
import { parseCommand, parseIntFlag } from '../args.ts';
import { printJson, println } from '../output.ts';
import { waitForShutdownSignal } from '../signals.ts';

const HELP = `Usage: homeostat sim [--port N] [--host H] [--fleet FILE] [--token-id ID] [--token-secret S] [--http] [--time-scale X]

The PVE-API simulator: the Proxmox VE 9 endpoints homeostat uses, under /api2/json, with tasks,
token auth (Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET) and fault injection under /sim/.
HTTPS with a self-signed certificate made at start (fingerprint in the ready line); --http for plain HTTP.

  --port N          listen port (default 8006; 0 = a free port)
  --host H          listen address (default 127.0.0.1)
  --fleet FILE      fleet manifest (YAML/JSON); default $HOMEOSTAT_FLEET, else the reference fleet
  --token-id ID     accepted token id (default $PVE_TOKEN_ID, else homeostat@pve!sim)
  --token-secret S  accepted token secret (default $PVE_TOKEN_SECRET, else a fresh UUID)
  --http            plain HTTP instead of HTTPS
  --time-scale X    multiply guests' boot/shutdown times (e.g. 0.1 for fast demos)

Ready line: {"ready":true,"url":...,"tokenId":...,"tokenSecret":...,"fingerprint":...,"nodes":3,"guests":12}
Faults: POST /sim/faults {"kind":"crash|hang|unhealthy|node-down|api-error|api-slow|disk-fill|cpu-spike|mem-spike|cert-expiring","target":"159","durationMs":30000}
        GET /sim/faults · DELETE /sim/faults/{id} · GET /sim/fleet · GET /sim/health/{vmid} · POST /sim/fence/{node}`;

export async function simMain(argv: string[]): Promise<number> {
  const { values } = parseCommand(argv, {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    fleet: { type: 'string' },
    'token-id': { type: 'string' },
    'token-secret': { type: 'string' },
    http: { type: 'boolean', default: false },
    'time-scale': { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  }, false);
  if (values.help) {
    println(HELP);
    return 0;
  }
  const config = loadConfig(process.env, { PVE_TOKEN_ID: values['token-id'], PVE_TOKEN_SECRET: values['token-secret'] });
  const port = parseIntFlag('port', values.port) ?? 8006;
  const timeScale = values['time-scale'] === undefined ? 1 : Number(values['time-scale']);
  if (!(timeScale > 0 && timeScale <= 100)) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `--time-scale: expected a number in (0, 100], got ${values['time-scale']}`);
  const fleetFile = values.fleet ?? config.HOMEOSTAT_FLEET;
  const fleet = fleetFile ? loadFleetFile(fleetFile) : referenceFleet();
  const log = createLogger(config.LOG_LEVEL);
  const sim = await startSimulator({ fleet, port, host: values.host, http: values.http, tokenId: config.PVE_TOKEN_ID, tokenSecret: config.PVE_TOKEN_SECRET, timeScale, log: log.child({ agent: 'sim' }) }).catch((e: unknown) => {
    if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `--port: ${port} is already in use; pick another (0 = a free port)`);
    throw e;
  });
  printJson({ ready: true, url: sim.url, tokenId: sim.tokenId, tokenSecret: sim.tokenSecret, ...(sim.fingerprint ? { fingerprint: sim.fingerprint } : {}), nodes: fleet.nodes.length, guests: fleet.guests.length });
  log.info({ url: sim.url, fingerprint: sim.fingerprint }, 'simulator ready');
  await waitForShutdownSignal();
  await sim.stop();
  return 0;
}
