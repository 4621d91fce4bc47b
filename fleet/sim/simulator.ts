// startSimulator: the PVE-API twin on a port, HTTPS with a fresh self-signed certificate (or
// plain HTTP), over an in-memory model of the fleet.
import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { HomeostatError, silentLogger, type Logger } from '../../core/mod.ts';
import type { Fleet } from '../manifest.ts';
import { isTokenId, TokenAuth } from './auth.ts';
import { generateSelfSignedCert } from './cert.ts';
import { FaultRegistry } from './faults.ts';
import { GuestOps } from './guest-ops.ts';
import { defaultSnippetsDir, HookRunner } from './hooks.ts';
import { SimModel } from './model.ts';
import { createRequestHandler } from './server.ts';
import { TaskRegistry } from './tasks.ts';
import type { SimWorld } from './world.ts';

export interface SimulatorOptions {
  fleet: Fleet;
  /** 0 = a free port. Default 8006 like PVE. */
  port?: number;
  host?: string;
  /** Plain HTTP instead of HTTPS. */
  http?: boolean;
  tokenId?: string;
  /** Default: a random UUID (proxmox-api insists on the UUID form). */
  tokenSecret?: string;
  /** Multiplies every simulated duration (bootMs, shutdownMs, task steps). */
  timeScale?: number;
  /** Guests start running (a live fleet) or stopped (to exercise a cold boot). */
  initial?: 'running' | 'stopped';
  /** Hookscript for every guest that has none in the manifest, e.g. `local:snippets/homeostat-hook`. */
  hookscript?: string;
  /** Where `local:snippets/…` volumes live (default: this checkout's deploy/pve). */
  snippetsDir?: string;
  /** Environment added to hookscript runs (e.g. HOMEOSTAT_HOOK_URL); `state.hooks.env` changes it later. */
  hookEnv?: Record<string, string>;
  /** Seed of the metrics random walk. */
  seed?: number;
  /** How often metrics take a step (default 1000 ms; 0 = only when `state.model.tick()` is called, for tests). */
  metricsIntervalMs?: number;
  log?: Logger;
}

export interface SimulatorHandle {
  /** e.g. https://127.0.0.1:8006 */
  url: string;
  port: number;
  tokenId: string;
  tokenSecret: string;
  /** SHA-256 of the certificate, AA:BB:… (HTTPS only). */
  fingerprint?: string;
  /** The self-signed certificate to trust (HTTPS only). */
  caPem?: string;
  /** The in-memory world, for tests. */
  state: SimWorld;
  stop(): Promise<void>;
}

export async function startSimulator(opts: SimulatorOptions): Promise<SimulatorHandle> {
  const host = opts.host ?? '127.0.0.1';
  const tokenId = opts.tokenId ?? 'homeostat@pve!sim';
  const tokenSecret = opts.tokenSecret ?? randomUUID();
  const timeScale = opts.timeScale ?? 1;
  const log = opts.log ?? silentLogger;
  if (!isTokenId(tokenId)) throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', `token id '${tokenId}': expected USER@REALM!TOKENID, e.g. homeostat@pve!sim`);
  if (!tokenSecret) throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', 'token secret: must not be empty');
  if (!Number.isFinite(timeScale) || timeScale < 0) throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', `timeScale: expected a number >= 0, got ${opts.timeScale}`);
  const port = opts.port ?? 8006;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', `port: expected 0-65535, got ${opts.port}`);

  if (opts.hookscript !== undefined && !/^[a-zA-Z][a-zA-Z0-9._-]*:snippets\/[^/\s]+$/.test(opts.hookscript)) {
    throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', `hookscript '${opts.hookscript}': expected a snippet volume id, e.g. local:snippets/homeostat-hook`);
  }

  const model = new SimModel(opts.fleet, { seed: opts.seed, initial: opts.initial });
  if (opts.hookscript) for (const g of model.guests.values()) g.config.hookscript ??= opts.hookscript;
  const tasks = new TaskRegistry();
  const hooks = new HookRunner(opts.snippetsDir ?? defaultSnippetsDir(), log);
  hooks.env = { ...(opts.hookEnv ?? {}) };
  const ops = new GuestOps(model, tasks, timeScale, hooks);
  const faults = new FaultRegistry(model, ops, tasks, log);
  const world: SimWorld = { model, tasks, ops, faults, hooks, timeScale, log };
  const handler = createRequestHandler(world, new TokenAuth(tokenId, tokenSecret));

  const cert = opts.http ? undefined : await generateSelfSignedCert(host);
  model.fingerprint = cert?.fingerprint;
  const server: Server = cert ? createHttpsServer({ key: cert.keyPem, cert: cert.certPem }, handler) : createHttpServer(handler);
  server.keepAliveTimeout = 30_000;
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('secureConnection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      const why = e.code === 'EADDRINUSE' ? `port ${port} on ${host} is in use; pick another with --port` : e.message;
      reject(new HomeostatError('HOMEOSTAT_ERR_CONFIG', `simulator cannot listen: ${why}`, { cause: e }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const every = opts.metricsIntervalMs ?? 1000;
  if (every > 0) model.start(every);
  const bound = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host;
  const url = `${cert ? 'https' : 'http'}://${urlHost}:${bound}`;
  log.info({ url, guests: model.guests.size, nodes: model.nodes.size, timeScale }, 'simulator listening');

  let stopped: Promise<void> | undefined;
  return {
    url, port: bound, tokenId, tokenSecret, fingerprint: cert?.fingerprint, caPem: cert?.certPem, state: world,
    stop() {
      stopped ??= new Promise<void>((resolve) => {
        model.stop();
        faults.stop();
        for (const t of [...tasks.running]) t.abort.abort(new Error('simulator stopped'));
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      return stopped;
    },
  };
}
