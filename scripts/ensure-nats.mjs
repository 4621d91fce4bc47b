#!/usr/bin/env node
// Installs what the demo and tests need when it is missing: npm packages (npm install), nats-server
// (required), the compiled JavaScript in dist/ (when a source is newer), and for the test suite chromium (browser tests) and promtool (Debian `prometheus`:
// rule and exposition checks) — apt-get, when root. Without root it says exactly what to do; a
// missing chromium or promtool only makes their tests skip, with a line saying so.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

const has = (cmd) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const run = (cmd, args) => spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'] }).status === 0;
const root = typeof process.getuid === 'function' && process.getuid() === 0;
const forTests = process.argv.includes('--tests');

if (!existsSync('node_modules/tsx') || !existsSync('node_modules/vitest') || !existsSync('node_modules/@nats-io/jetstream')) {
  // `npm install` rather than `npm ci`: some registry mirrors leave other platforms' optional
  // packages (rollup, esbuild) out of the lock file, and `npm ci` then refuses a lock it calls
  // out of sync. `npm install` keeps the locked versions and installs what this platform needs.
  // --no-save, and the lock file put back byte for byte: installing never rewrites a tracked file
  console.error('homeostat: installing npm packages (npm install)…');
  const lock = existsSync('package-lock.json') ? readFileSync('package-lock.json') : undefined;
  const ok = run('npm', ['install', '--no-audit', '--no-fund', '--no-save']);
  if (lock && !lock.equals(readFileSync('package-lock.json'))) writeFileSync('package-lock.json', lock);
  if (!ok) process.exit(1);
}

let aptUpdated = false;
/** apt-get install, quietly; true when it worked. Only as root on a machine with apt-get. */
function aptInstall(packages) {
  if (!root || !has('apt-get')) return false;
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const quiet = { stdio: ['ignore', 'ignore', 'inherit'], env };
  if (!aptUpdated) aptUpdated = spawnSync('apt-get', ['-qq', 'update'], quiet).status === 0;
  return spawnSync('apt-get', ['-qq', 'install', '-y', '--no-install-recommends', ...packages], quiet).status === 0;
}

const natsBins = ['nats-server', '/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'];
if (!natsBins.some(has)) {
  if (root && has('apt-get')) {
    console.error('homeostat: nats-server not found; installing it with apt-get…');
    if (!aptInstall(['nats-server']) || !natsBins.some(has)) {
      console.error('homeostat: apt-get could not install nats-server; install it yourself (https://github.com/nats-io/nats-server/releases) or pass --nats URL');
      process.exit(1);
    }
  } else {
    console.error('homeostat: nats-server is not on PATH. Install it: `sudo apt-get install -y nats-server` (Debian/Ubuntu), or download it from https://github.com/nats-io/nats-server/releases, or point homeostat at a running server with --nats URL / NATS_URL.');
    process.exit(1);
  }
}

if (forTests) {
  // optional for the suite: their tests skip without them
  const optional = [
    { pkg: 'chromium', ok: () => existsSync(process.env.CHROMIUM_PATH ?? '/usr/bin/chromium') || has('chromium'), why: 'browser tests of the web console' },
    { pkg: 'prometheus', ok: () => has('promtool'), why: 'promtool checks of the alert rules and the metrics exposition' },
  ];
  const missing = optional.filter((o) => !o.ok());
  if (missing.length && root && has('apt-get')) {
    console.error(`homeostat: installing ${missing.map((o) => o.pkg).join(' and ')} with apt-get (for the tests)…`);
    aptInstall(missing.map((o) => o.pkg));
  }
  for (const o of missing.filter((m) => !m.ok())) {
    console.error(`homeostat: ${o.pkg} is not installed: the ${o.why} will be skipped (sudo apt-get install -y ${o.pkg})`);
  }
}

// last: the build needs the npm packages (typescript) installed above
const { build, isStale } = await import('./build.mjs');
if (isStale()) {
  console.error('homeostat: building dist/ (tsc)…');
  if (!build()) process.exit(1);
}
