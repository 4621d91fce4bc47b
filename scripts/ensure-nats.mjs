#!/usr/bin/env node
// Installs what the demo and tests need when it is missing: npm packages (npm ci), nats-server
// (apt-get, when root) and the compiled JavaScript in dist/ (when a source is newer). Otherwise
// says exactly what to do.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const has = (cmd) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const run = (cmd, args) => spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] }).status === 0;

if (!existsSync('node_modules/tsx') || !existsSync('node_modules/vitest') || !existsSync('node_modules/@nats-io/jetstream')) {
  // `npm install` rather than `npm ci`: some registry mirrors leave other platforms' optional
  // packages (rollup, esbuild) out of the lock file, and `npm ci` then refuses a lock it calls
  // out of sync. `npm install` keeps the locked versions and installs what this platform needs.
  console.error('homeostat: installing npm packages (npm install)…');
  if (!run('npm', ['install', '--no-audit', '--no-fund'])) process.exit(1);
}

const natsBins = ['nats-server', '/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'];
if (!natsBins.some(has)) {
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (root && has('apt-get')) {
    console.error('homeostat: nats-server not found; installing it with apt-get…');
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const ok = spawnSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'], env }).status === 0 &&
      spawnSync('apt-get', ['install', '-y', 'nats-server'], { stdio: ['ignore', 'ignore', 'inherit'], env }).status === 0;
    if (!ok || !natsBins.some(has)) {
      console.error('homeostat: apt-get could not install nats-server; install it yourself (https://github.com/nats-io/nats-server/releases) or pass --nats URL');
      process.exit(1);
    }
  } else {
    console.error('homeostat: nats-server is not on PATH. Install it: `sudo apt-get install -y nats-server` (Debian/Ubuntu), or download it from https://github.com/nats-io/nats-server/releases, or point homeostat at a running server with --nats URL / NATS_URL.');
    process.exit(1);
  }
}

// last: the build needs the npm packages (typescript) installed above
const { build, isStale } = await import('./build.mjs');
if (isStale()) {
  console.error('homeostat: building dist/ (tsc)…');
  if (!build()) process.exit(1);
}
