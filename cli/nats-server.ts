// Spawns and stops a local `nats-server -js`: the embedded default of `homeostat up` and the tests.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { HomeostatError } from '../core/mod.ts';
import { IDENTITIES, permissionsOf, type Permissions } from '../bus/mod.ts';
import type { Keyring } from './keyring.ts';

export interface NatsServerHandle {
  url: string;
  port: number;
  pid: number;
  stop(): Promise<void>;
  /** Resolves when the process exits on its own or after stop(). */
  exited: Promise<number | null>;
}

export function findNatsServer(): string | undefined {
  for (const candidate of ['nats-server', '/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server']) {
    const r = spawnSync(candidate, ['--version'], { stdio: 'ignore' });
    if (r.status === 0) return candidate;
  }
  return undefined;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface NatsUser {
  nkey: string;
  permissions: Permissions;
}

export interface NatsServerConfig {
  host: string;
  port: number;
  storeDir: string;
  /** With users, authentication is on: only these nkeys connect, each within its permissions. */
  users?: NatsUser[];
  /** Extra top-level blocks (cluster, tls), written as they are. */
  extra?: string;
}

/** Every homeostat identity of the keyring, with its permissions (bus/permissions.ts). */
export function natsUsers(keyring: Keyring): NatsUser[] {
  return IDENTITIES.map((name) => ({ nkey: keyring.get(name).publicKey, permissions: permissionsOf(name) }));
}

const list = (xs: readonly string[]) => `[${xs.map((x) => JSON.stringify(x)).join(', ')}]`;

/** The nats-server configuration file: one place, so a cluster of servers carries the same auth. */
export function natsServerConfig(c: NatsServerConfig): string {
  const lines = [
    `listen: ${JSON.stringify(`${c.host}:${c.port}`)}`,
    `jetstream { store_dir: ${JSON.stringify(c.storeDir)} }`,
  ];
  if (c.users) lines.push(natsAuthorization(c.users).trimEnd());
  if (c.extra) lines.push(c.extra);
  return `${lines.join('\n')}\n`;
}

/** The `authorization` block alone: every identity's nkey and permissions (also what `homeostat
 *  init` writes for servers it does not start, e.g. compose's: `nats-server -c <file> …`). */
export function natsAuthorization(users: NatsUser[]): string {
  const lines = ['authorization {', '  users = ['];
  for (const u of users) {
    lines.push(`    { nkey: ${JSON.stringify(u.nkey)}, permissions: { publish: { allow: ${list(u.permissions.publish)} }, subscribe: { allow: ${list(u.permissions.subscribe)} }, allow_responses: true } }`);
  }
  lines.push('  ]', '}');
  return `${lines.join('\n')}\n`;
}

// What nats-server gets of our environment: enough to run and log, none of our secrets (PVE
// token, NATS credentials, advisor keys); it reads its own settings from its arguments.
const NATS_ENV = new Set(['PATH', 'HOME', 'TZ', 'LANG', 'TMPDIR', 'GOMAXPROCS', 'GOMEMLIMIT', 'GODEBUG']);

/** The child's environment: the allow-listed variables of ours (LC_* too), plus `extra`. */
export function natsServerEnv(env: NodeJS.ProcessEnv = process.env, extra: Record<string, string> = {}): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && (NATS_ENV.has(k) || k.startsWith('LC_'))) out[k] = v;
  return { ...out, ...extra };
}

export interface NatsServerOptions {
  dataDir: string;
  port?: number;
  host?: string;
  env?: Record<string, string>;
  auth?: Keyring;
  /** Extra command-line arguments (cluster routes, server name); they add to the config file. */
  args?: string[];
  /** server_tags (config file only): where JetStream may place a stream (`placement.tags`). */
  tags?: string[];
}

export async function startNatsServer(opts: NatsServerOptions): Promise<NatsServerHandle> {
  const bin = findNatsServer();
  if (!bin) {
    throw new HomeostatError('HOMEOSTAT_ERR_NATS_MISSING', 'nats-server is not on PATH');
  }
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port && opts.port > 0 ? opts.port : await freePort();
  mkdirSync(opts.dataDir, { recursive: true });
  let args = ['-js', '-a', host, '-p', String(port), '-sd', opts.dataDir];
  if (opts.auth || opts.tags?.length) {
    const conf = join(opts.dataDir, 'nats-server.conf');
    const extra = opts.tags?.length ? `server_tags: ${list(opts.tags)}` : undefined;
    writeFileSync(conf, natsServerConfig({ host, port, storeDir: opts.dataDir, users: opts.auth && natsUsers(opts.auth), extra }), { mode: 0o600 });
    args = ['-c', conf];
  }
  args.push(...(opts.args ?? []));
  const child: ChildProcess = spawn(bin, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: natsServerEnv(process.env, opts.env),
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new HomeostatError('HOMEOSTAT_ERR_NATS_UNAVAILABLE', `nats-server did not start in 10 s: ${stderr.slice(-300)}`)), 10_000);
    child.stderr!.on('data', (b: Buffer) => {
      stderr += b.toString();
      if (stderr.includes('Server is ready')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new HomeostatError('HOMEOSTAT_ERR_NATS_UNAVAILABLE', `nats-server exited with ${code}: ${stderr.trim().split('\n').slice(-2).join(' ')}`));
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new HomeostatError('HOMEOSTAT_ERR_NATS_MISSING', `cannot run nats-server: ${e.message}`));
    });
  });
  child.stderr!.resume();
  return {
    url: `nats://${host}:${port}`,
    port,
    pid: child.pid!,
    exited,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}
