// One stack per data directory. `up` claims <data-dir>/up.lock (its pid) before it starts
// anything, checks its ports, and writes its ready line to <data-dir>/ready.json so client
// commands (`fault`, and any command without --nats/NATS_URL) find the stack without copying
// secrets around. A lock whose pid is gone is stale and taken over.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { HomeostatError } from '../core/mod.ts';

export const DEFAULT_DATA_DIR = '.homeostat';
const LOCK = 'up.lock';
const READY = 'ready.json';

const LockRecord = z.object({ pid: z.number().int(), startedAt: z.string(), cwd: z.string().optional() });

export interface DataDirLock {
  dir: string;
  writeReady(info: Record<string, unknown>): void;
  release(): void;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readLock(path: string): z.infer<typeof LockRecord> | undefined {
  try {
    const r = LockRecord.safeParse(JSON.parse(readFileSync(path, 'utf8')));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}

/** Claim `dir` for this process, or refuse naming the pid that holds it. */
export function claimDataDir(dir: string): DataDirLock {
  const abs = resolve(dir);
  mkdirSync(abs, { recursive: true });
  const path = join(abs, LOCK);
  const record = JSON.stringify({ pid: process.pid, startedAt: new Date().toISOString(), cwd: process.cwd() });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, 'wx', 0o644);
      writeSync(fd, `${record}\n`);
      closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const held = readLock(path);
      if (held && held.pid !== process.pid && alive(held.pid)) {
        throw new HomeostatError('HOMEOSTAT_ERR_DATA_DIR_IN_USE',
          `data directory ${dir} is in use by another \`homeostat up\` (pid ${held.pid}, since ${held.startedAt}); stop that one, or give this one its own store with --data-dir DIR`);
      }
      // stale (its process is gone, or the file is unreadable): take it over
      rmSync(path, { force: true });
      if (attempt === 1) throw e;
    }
  }
  const readyPath = join(abs, READY);
  rmSync(readyPath, { force: true });
  return {
    dir: abs,
    writeReady(info) {
      writeFileSync(readyPath, `${JSON.stringify({ ...info, pid: process.pid })}\n`, { mode: 0o600 });
    },
    release() {
      rmSync(readyPath, { force: true });
      if (readLock(path)?.pid === process.pid) rmSync(path, { force: true });
    },
  };
}

export const ReadyInfo = z.object({
  natsUrl: z.string(),
  pveUrl: z.string().optional(),
  pveTokenId: z.string().optional(),
  pveTokenSecret: z.string().optional(),
  pid: z.number().int().optional(),
}).passthrough();
export type ReadyInfo = z.infer<typeof ReadyInfo>;

/** The ready info of the `up` running on `dir`, if one is (its pid alive). */
export function readReady(dir: string = process.env.HOMEOSTAT_DATA_DIR || DEFAULT_DATA_DIR): ReadyInfo | undefined {
  const path = join(resolve(dir), READY);
  if (!existsSync(path)) return undefined;
  try {
    const r = ReadyInfo.safeParse(JSON.parse(readFileSync(path, 'utf8')));
    if (!r.success) return undefined;
    if (r.data.pid !== undefined && !alive(r.data.pid)) return undefined;
    return r.data;
  } catch {
    return undefined;
  }
}

export interface PortClaim {
  /** The flag that picks this port, named in the hint. */
  flag: string;
  what: string;
  port: number | undefined;
  host?: string;
}

function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolveFree) => {
    const s = createServer();
    s.once('error', () => resolveFree(false));
    s.listen({ port, host, exclusive: true }, () => s.close(() => resolveFree(true)));
  });
}

/** Every fixed port must be free before anything starts; port 0 / undefined-with-no-default is skipped. */
export async function checkPorts(claims: PortClaim[]): Promise<void> {
  const busy: string[] = [];
  for (const c of claims) {
    if (!c.port) continue;
    if (!(await portFree(c.port, c.host ?? '127.0.0.1'))) busy.push(`${c.what} port ${c.port} (${c.flag})`);
  }
  if (busy.length) {
    const flags = claims.filter((c) => c.port && busy.some((b) => b.includes(`(${c.flag})`))).map((c) => `${c.flag} 0`).join(' ');
    throw new HomeostatError('HOMEOSTAT_ERR_PORT_IN_USE',
      `${busy.join(', ')} already in use — another \`homeostat up\` or another program listens there; pick free ports with ${flags} (a second stack also needs its own --data-dir)`);
  }
}
