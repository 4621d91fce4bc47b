// The compiled `homeostat` binary as a child process, its output collected.
import { spawn, type ChildProcess } from 'node:child_process';

export const BIN = new URL('../../bin/homeostat.js', import.meta.url).pathname;

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

export interface CliProcess {
  p: ChildProcess;
  /** What it wrote so far. */
  out(): string;
  err(): string;
  done: Promise<CliRun>;
}

/** Start `homeostat ...args` with `env` on top of this process's (NO_COLOR, LOG_LEVEL=warn set). */
export function spawnCli(args: string[], env: Record<string, string | undefined>): CliProcess {
  const p = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, NO_COLOR: '1', LOG_LEVEL: 'warn', ...env } });
  let out = '';
  let err = '';
  p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<CliRun>((resolve) => p.on('close', (code, sig) => resolve({ code: code ?? (sig ? 128 : -1), out, err })));
  return { p, out: () => out, err: () => err, done };
}

/** Run `homeostat ...args` to its end. */
export function runCli(args: string[], env: Record<string, string | undefined>): Promise<CliRun> {
  return spawnCli(args, env).done;
}
