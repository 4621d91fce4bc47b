// One stack per data directory, end to end through the real CLI: a second `up` on a directory in
// use refuses naming the first one's pid and leaves the first healing; a busy port is named with
// its flag before anything starts; a stale lock (its process gone) is taken over.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';

const BIN = new URL('../bin/homeostat.js', import.meta.url).pathname;
const root = mkdtempSync(join(tmpdir(), 'homeostat-up-'));
const children: ReturnType<typeof spawn>[] = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
});

const ZERO_PORTS = ['--nats-port', '0', '--sim-port', '0', '--alertmanager-port', '0', '--metrics-port', '0', '--console-port', '0', '--http'];

function up(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, [BIN, 'up', ...args], { env: { ...process.env, LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const firstLine = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', () => reject(new Error(`exited before a ready line: ${stderr}`)));
  });
  firstLine.catch(() => undefined);
  return { child, exit, firstLine, stderr: () => stderr };
}

function cli(args: string[], env: Record<string, string>) {
  const r = spawnSync(process.execPath, [BIN, ...args], { env: { ...process.env, NATS_URL: '', LOG_LEVEL: 'warn', ...env }, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function listen(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

describe('homeostat up: one stack per data directory', () => {
  it('a second up on the same directory refuses with the first one\'s pid; the first keeps working', async () => {
    const dir = join(root, 'a');
    const first = up(['--sim', '--data-dir', dir, ...ZERO_PORTS, '--agents', 'operator,sensing']);
    const ready = JSON.parse(await first.firstLine);
    expect(ready).toMatchObject({ ready: true, natsUrl: expect.stringMatching(/^nats:/), dataDir: dir });
    const saved = JSON.parse(readFileSync(join(dir, 'ready.json'), 'utf8'));
    expect(saved).toMatchObject({ natsUrl: ready.natsUrl, pveTokenSecret: ready.pveTokenSecret, pid: first.child.pid });

    const second = up(['--sim', '--data-dir', dir, ...ZERO_PORTS]);
    expect(await second.exit).toBe(2);
    const lines = second.stderr().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/HOMEOSTAT_ERR_DATA_DIR_IN_USE/);
    expect(lines[0]).toContain(`pid ${first.child.pid}`);
    expect(lines[0]).toContain('--data-dir');
    // the second one never touched the first one's ready file or store
    expect(JSON.parse(readFileSync(join(dir, 'ready.json'), 'utf8')).pid).toBe(first.child.pid);

    // a client command with neither --nats nor NATS_URL finds the stack through the data dir
    const status = cli(['status', '--json'], { HOMEOSTAT_DATA_DIR: dir });
    expect(status.stderr).toBe('');
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ guests: expect.any(Array) });

    first.child.kill('SIGTERM');
    expect(await first.exit).toBe(0);
    expect(existsSync(join(dir, 'up.lock'))).toBe(false);
    expect(existsSync(join(dir, 'ready.json'))).toBe(false);
  }, 90_000);

  it('a busy port is named with its flag before anything starts', async () => {
    const dir = join(root, 'b');
    const held = await listen();
    try {
      const p = up(['--sim', '--data-dir', dir, '--nats-port', String(held.port), '--sim-port', '0', '--alertmanager-port', '0']);
      expect(await p.exit).toBe(2);
      const line = p.stderr().trim();
      expect(line.split('\n')).toHaveLength(1);
      expect(line).toMatch(/HOMEOSTAT_ERR_PORT_IN_USE: NATS port \d+ \(--nats-port\)/);
      expect(line).toContain('--nats-port 0');
      expect(line).not.toMatch(/nats-server exited/);
      expect(existsSync(join(dir, 'nats'))).toBe(false);
      expect(existsSync(join(dir, 'up.lock'))).toBe(false);

      const q = up(['--sim', '--data-dir', dir, '--nats-port', '0', '--sim-port', String(held.port), '--alertmanager-port', '0']);
      expect(await q.exit).toBe(2);
      expect(q.stderr()).toMatch(/simulator port \d+ \(--sim-port\).*--sim-port 0/);
    } finally {
      held.server.close();
    }
  }, 60_000);

  it('takes over a stale lock whose process is gone', async () => {
    const dir = join(root, 'c');
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'up.lock'), JSON.stringify({ pid: Number(dead.stdout), startedAt: new Date().toISOString() }));
    const p = up(['--data-dir', dir, ...ZERO_PORTS, '--agents', 'operator']);
    const ready = JSON.parse(await p.firstLine);
    expect(ready.ready).toBe(true);
    expect(JSON.parse(readFileSync(join(dir, 'up.lock'), 'utf8')).pid).toBe(p.child.pid);
    p.child.kill('SIGINT');
    expect(await p.exit).toBe(0);
  }, 60_000);
});
