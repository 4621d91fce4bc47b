// `homeostat sim`: the PVE-API simulator alone. One JSON ready line on stdout, logs on stderr,
// SIGINT/SIGTERM stop it (exit 0); bad flags or manifest: one line on stderr, exit 2.
import { parseArgs } from 'node:util';
import { createLogger, describeError, HomeostatError } from '../../core/mod.ts';
import { loadFleetFile } from '../../fleet/manifest.ts';
import { referenceFleet } from '../../fleet/reference-fleet.ts';
import { startSimulator } from '../../fleet/sim/mod.ts';
import { waitForShutdownSignal } from '../signals.ts';

const HELP = `Usage: homeostat sim [--port N] [--host H] [--fleet FILE] [--token-id ID] [--token-secret S] [--http] [--time-scale X] [--stopped] [--seed N] [--hookscript VOLUME] [--hook-url URL]

Runs the PVE-API simulator (PVE 9, /api2/json/...) on a fleet, plus its fault-injection API
(/sim/fleet, /sim/faults, /sim/health/{vmid}, /sim/fence/{node}; same token).
Prints one JSON line on stdout when ready:
  {"ready":true,"url":...,"tokenId":...,"tokenSecret":...,"fingerprint":...,"guests":12,"nodes":3}

  --port N          port (default 8006; 0 = a free port)
  --host H          address to listen on (default 127.0.0.1)
  --fleet FILE      fleet manifest (YAML/JSON); default: the reference fleet
  --token-id ID     API token id USER@REALM!TOKENID (default $PVE_TOKEN_ID, else homeostat@pve!sim)
  --token-secret S  token secret (default $PVE_TOKEN_SECRET, else a fresh UUID)
  --http            plain HTTP instead of HTTPS with a self-signed certificate
  --time-scale X    multiply boot/shutdown/task durations by X (default 1; 0.1 = ten times faster)
  --stopped         start with every guest stopped (to exercise a cold boot)
  --seed N          seed of the metrics random walk (default 1)
  --hookscript V    hookscript of every guest without one in the manifest, run on each phase
                    like PVE does (local:snippets/homeostat-hook = deploy/pve/homeostat-hook)
  --hook-url URL    where that hook reports (HOMEOSTAT_HOOK_URL), e.g. http://127.0.0.1:9095/pve/hook
Logs go to stderr (LOG_LEVEL, default info). Ctrl-C / SIGTERM stops it.`;

function usageError(message: string): HomeostatError {
  return new HomeostatError('HOMEOSTAT_ERR_USAGE', message);
}

function numberFlag(name: string, value: string | undefined, check: (n: number) => boolean, expected: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || !check(n)) throw usageError(`--${name}: expected ${expected}, got ${JSON.stringify(value)}`);
  return n;
}

export async function simMain(argv: string[]): Promise<number> {
  let stop: (() => Promise<void>) | undefined;
  try {
    let values;
    try {
      ({ values } = parseArgs({
        args: argv,
        strict: true,
        allowPositionals: false,
        options: {
          port: { type: 'string' },
          host: { type: 'string' },
          fleet: { type: 'string' },
          'token-id': { type: 'string' },
          'token-secret': { type: 'string' },
          http: { type: 'boolean', default: false },
          'time-scale': { type: 'string' },
          stopped: { type: 'boolean', default: false },
          seed: { type: 'string' },
          hookscript: { type: 'string' },
          'hook-url': { type: 'string' },
          help: { type: 'boolean', short: 'h', default: false },
        },
      }));
    } catch (e) {
      throw usageError((e as Error).message.split('\n')[0]);
    }
    if (values.help) {
      process.stdout.write(`${HELP}\n`);
      return 0;
    }
    const port = numberFlag('port', values.port, (n) => Number.isInteger(n) && n >= 0 && n <= 65535, 'an integer 0..65535') ?? 8006;
    const timeScale = numberFlag('time-scale', values['time-scale'], (n) => n > 0 && n <= 100, 'a number in (0, 100]');
    const seed = numberFlag('seed', values.seed, (n) => Number.isInteger(n), 'an integer');
    if (values.host !== undefined && !values.host.trim()) throw usageError('--host: expected an address, got ""');
    const hookUrl = values['hook-url'];
    if (hookUrl !== undefined && !/^https?:\/\/\S+$/.test(hookUrl)) throw usageError(`--hook-url: expected an http(s) URL, got ${JSON.stringify(hookUrl)}`);
    const fleet = values.fleet ? loadFleetFile(values.fleet) : referenceFleet();
    const log = createLogger(process.env.LOG_LEVEL || 'info').child({ agent: 'sim' });
    // listen before starting: a Ctrl-C during start-up (or right after the ready line) still stops cleanly
    const shutdownSignal = waitForShutdownSignal();

    const sim = await startSimulator({
      fleet,
      port,
      host: values.host,
      http: values.http,
      tokenId: values['token-id'] ?? (process.env.PVE_TOKEN_ID || undefined),
      tokenSecret: values['token-secret'] ?? (process.env.PVE_TOKEN_SECRET || undefined),
      timeScale,
      seed,
      initial: values.stopped ? 'stopped' : 'running',
      hookscript: values.hookscript,
      hookEnv: hookUrl ? { HOMEOSTAT_HOOK_URL: hookUrl } : undefined,
      log,
    });
    stop = () => sim.stop();
    const ready = {
      ready: true,
      url: sim.url,
      tokenId: sim.tokenId,
      tokenSecret: sim.tokenSecret,
      ...(sim.fingerprint ? { fingerprint: sim.fingerprint } : {}),
      guests: fleet.guests.length,
      nodes: fleet.nodes.length,
    };
    process.stdout.write(`${JSON.stringify(ready)}\n`);
    const signal = await shutdownSignal;
    log.info({ signal }, 'simulator stopping');
    await sim.stop();
    return 0;
  } catch (e) {
    await stop?.().catch(() => undefined);
    process.stderr.write(`homeostat sim: ${describeError(e)}\n`);
    const usage = e instanceof HomeostatError && ['HOMEOSTAT_ERR_USAGE', 'HOMEOSTAT_ERR_CONFIG', 'HOMEOSTAT_ERR_MANIFEST'].includes(e.code);
    return usage ? 2 : 1;
  }
}
