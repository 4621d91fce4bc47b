// SIGTERM stops everything `up` started: the process exits 0 and its nats-server child is gone.
// Also through `npm run demo`, where npm passes the signal to its shell: the shell must have
// become `up` (exec), or `up` is orphaned and keeps running after npm exits.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { until } from './helpers/bus.ts';
import { runCli } from './helpers/cli.ts';

const ROOT = new URL('..', import.meta.url).pathname;
const BIN = join(ROOT, 'bin/homeostat.js');
const root = mkdtempSync(join(tmpdir(), 'homeostat-shutdown-'));
const pids: number[] = [];
afterAll(() => {
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

const ARGS = ['--nats-port', '0', '--sim-port', '0', '--alertmanager-port', '0', '--metrics-port', '0', '--console-port', '0', '--http'];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pids of `pid`'s children (Linux `ps`). */
function childrenOf(pid: number): { pid: number; cmd: string }[] {
  const r = spawnSync('ps', ['-o', 'pid=,comm=', '--ppid', String(pid)], { encoding: 'utf8' });
  return r.stdout.trim().split('\n').filter(Boolean).map((l) => {
    const [p, cmd] = l.trim().split(/\s+/, 2);
    return { pid: Number(p), cmd };
  });
}

function start(cmd: string, args: string[]) {
  const child = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'warn', NATS_URL: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
  pids.push(child.pid!);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const ready = new Promise<Record<string, unknown>>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (l) => {
      if (l.startsWith('{"ready":true')) resolve(JSON.parse(l) as Record<string, unknown>);
    });
    child.once('exit', (code) => reject(new Error(`exited (${code}) before a ready line: ${stderr}`)));
  });
  ready.catch(() => undefined);
  return { child, exit, ready, stderr: () => stderr };
}

describe('SIGTERM', () => {
  it('homeostat up --sim exits 0 and its nats-server child is gone', async () => {
    const dir = join(root, 'up');
    const up = start(process.execPath, [BIN, 'up', '--sim', '--data-dir', dir, ...ARGS]);
    await up.ready;
    const nats = childrenOf(up.child.pid!).filter((c) => c.cmd === 'nats-server');
    expect(nats).toHaveLength(1);
    pids.push(nats[0].pid);
    up.child.kill('SIGTERM');
    expect(await up.exit).toBe(0);
    await until(() => !alive(nats[0].pid), 10_000, 50);
    expect(up.stderr()).not.toMatch(/still open after/); // stopped by itself, not by the backstop
  }, 90_000);

  it('up whose nats-server died first still stops on SIGTERM: connections closed at once, nothing left waiting on NATS', async () => {
    const dir = join(root, 'nats-gone');
    const up = start(process.execPath, [BIN, 'up', '--sim', '--data-dir', dir, ...ARGS]);
    await up.ready;
    const nats = childrenOf(up.child.pid!).filter((c) => c.cmd === 'nats-server');
    expect(nats).toHaveLength(1);
    process.kill(nats[0].pid, 'SIGKILL');
    await until(() => /nats disconnected/.test(up.stderr()), 20_000, 50);
    up.child.kill('SIGTERM');
    // before: periodic tasks retried KV listings against the dead server (12 tries of up to
    // 4 s each, one listing after another) and `up` was still running minutes later
    expect(await up.exit).toBe(0);
    expect(up.stderr()).toMatch(/stopping while NATS is unreachable/);
    expect(up.stderr()).not.toMatch(/still open after/);
  }, 60_000);

  it('npm run demo: the signal npm passes on reaches up; up and its nats-server are gone', async () => {
    const dir = join(root, 'demo');
    const npm = start('npm', ['run', '--silent', 'demo', '--', '--data-dir', dir, ...ARGS]);
    await npm.ready;
    const upPid = (JSON.parse(readFileSync(join(dir, 'ready.json'), 'utf8')) as { pid: number }).pid;
    pids.push(upPid);
    const nats = childrenOf(upPid).filter((c) => c.cmd === 'nats-server');
    expect(nats).toHaveLength(1);
    pids.push(nats[0].pid);
    npm.child.kill('SIGTERM');
    await npm.exit;
    await until(() => !alive(upPid) && !alive(nats[0].pid), 10_000, 50);
  }, 180_000);

  it('up --replicas: a chat approval (signed by the operator agent) counts in the decision process; a SIGKILLed up takes its agent processes with it', async () => {
    const dir = join(root, 'replicas');
    const up = start(process.execPath, [BIN, 'up', '--sim', '--replicas', '1', '--data-dir', dir, ...ARGS]);
    const ready = await up.ready;
    const agents = (ready.processes as { agent: string; pid: number }[]).map((p) => p.pid);
    expect(agents.length).toBeGreaterThan(0);
    pids.push(...agents);
    const nats = childrenOf(up.child.pid!).filter((c) => c.cmd === 'nats-server');
    pids.push(...nats.map((n) => n.pid));
    // an approval relayed by chat is signed by the operator agent's key: the decision agent in its
    // own process trusts that key too (it once trusted only the CLI's, and refused every chat approval)
    const env = { HOMEOSTAT_DATA_DIR: dir, NATS_URL: '', NATS_CREDS: '' };
    const reboot = await runCli(['reboot', '200'], env);
    expect(reboot.out, reboot.err).toMatch(/waits for an approval \(homeostat approve (act-[\w-]+)/);
    const id = /approve (act-[\w-]+)/.exec(reboot.out)![1];
    const chat = await runCli(['chat', `approve ${id}`], env);
    expect(chat.out + chat.err).toMatch(new RegExp(`Approved action ${id}`));
    up.child.kill('SIGKILL');
    await up.exit;
    // their stdin (a pipe from up) closes: each drains and exits by itself
    await until(() => agents.every((pid) => !alive(pid)), 30_000, 100);
  }, 180_000);
});
