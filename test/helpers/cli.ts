// The compiled `homeostat` binary as a child process, its output collected.
import { spawn } from 'node:child_process';

export const BIN = new URL('../../bin/homeostat.js', import.meta.url).pathname;

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/** Run `homeostat ...args` with `env` on top of this process's (NO_COLOR, LOG_LEVEL=warn set). */
export function runCli(args: string[], env: Record<string, string | undefined>): Promise<CliRun> {
  const p = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, NO_COLOR: '1', LOG_LEVEL: 'warn', ...env } });
  let out = '';
  let err = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve) => p.on('close', (code, sig) => resolve({ code: code ?? (sig ? 128 : -1), out, err })));
}
