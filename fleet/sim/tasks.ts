// PVE worker tasks: UPIDs in PVE's exact format, the per-node task index (/nodes/{node}/tasks),
// logs, and the per-guest config flock that serialises tasks on one guest like PVE's lock_config.
import { sleep } from '../../core/mod.ts';
import type { SimNode } from './model.ts';

export interface SimTask {
  upid: string;
  node: string;
  pid: number;
  pstart: number;
  starttime: number;
  type: string;
  id: string;
  user: string;
  status: 'running' | 'stopped';
  exitstatus?: string;
  endtime?: number;
  log: string[];
  readonly abort: AbortController;
  readonly vmid?: number;
}

export class TaskAbort extends Error {}

const hex8 = (n: number) => (n >>> 0).toString(16).toUpperCase().padStart(8, '0');
const UPID_RE = /^UPID:([a-zA-Z0-9][a-zA-Z0-9-]*):([0-9A-F]{8}):([0-9A-F]{8,9}):([0-9A-F]{8}):([^:\s]+):([^:\s]*):([^:\s]+):$/;

export function parseUpid(upid: string): { node: string; pid: number; pstart: number; starttime: number; type: string; id: string; user: string } | undefined {
  const m = UPID_RE.exec(upid);
  if (!m) return undefined;
  return { node: m[1], pid: parseInt(m[2], 16), pstart: parseInt(m[3], 16), starttime: parseInt(m[4], 16), type: m[5], id: m[6], user: m[7] };
}

/** PVE's lock_config: an exclusive flock per guest, waited for up to a timeout. */
export class GuestFlock {
  private held = false;
  private waiters: (() => void)[] = [];

  async acquire(timeoutMs: number, signal: AbortSignal, lockFile: string): Promise<() => void> {
    if (this.held) {
      await new Promise<void>((resolve, reject) => {
        const wake = () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', onAbort);
          resolve();
        };
        const drop = () => (this.waiters = this.waiters.filter((w) => w !== wake));
        const onAbort = () => {
          clearTimeout(timer);
          drop();
          reject(signal.reason);
        };
        const timer = setTimeout(() => {
          drop();
          signal.removeEventListener('abort', onAbort);
          reject(new TaskAbort(`can't lock file '${lockFile}' - got timeout`));
        }, timeoutMs);
        signal.addEventListener('abort', onAbort, { once: true });
        this.waiters.push(wake);
      });
    }
    this.held = true;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiters.shift();
      if (next) next();
      else this.held = false;
    };
  }
}

export interface TaskContext {
  readonly task: SimTask;
  readonly signal: AbortSignal;
  sleep(ms: number): Promise<void>;
  log(line: string): void;
}

export interface TaskFilter {
  start?: number;
  limit?: number;
  since?: number;
  until?: number;
  errors?: boolean;
  source?: 'archive' | 'active' | 'all';
  statusfilter?: string;
  typefilter?: string;
  userfilter?: string;
  vmid?: number;
}

/** Outcome class of a finished task, as PVE's statusfilter knows them. */
function statusClass(t: SimTask): 'ok' | 'warning' | 'error' | 'unknown' {
  if (t.status === 'running' || !t.exitstatus) return 'unknown';
  if (t.exitstatus === 'OK') return 'ok';
  if (t.exitstatus.startsWith('WARNINGS')) return 'warning';
  return 'error';
}

export class TaskRegistry {
  private readonly byUpid = new Map<string, SimTask>();
  private readonly perNode = new Map<string, SimTask[]>();
  private nextPid = 100_000 + Math.floor(Math.random() * 500_000);
  readonly running = new Set<SimTask>();

  constructor(private readonly maxPerNode = 2000) {}

  get(upid: string): SimTask | undefined {
    return this.byUpid.get(upid);
  }

  create(node: SimNode, type: string, id: string, user: string, vmid?: number): SimTask {
    const now = Date.now();
    const pid = this.nextPid++;
    // pstart: the worker's start time in clock ticks (100 Hz) since the node booted, as in /proc/PID/stat.
    const pstart = Math.floor((now - node.bootedAt) / 10);
    const starttime = Math.floor(now / 1000);
    const upid = `UPID:${node.name}:${hex8(pid)}:${hex8(pstart)}:${hex8(starttime)}:${type}:${id}:${user}:`;
    const task: SimTask = { upid, node: node.name, pid, pstart, starttime, type, id, user, status: 'running', log: [], abort: new AbortController(), vmid };
    this.byUpid.set(upid, task);
    const list = this.perNode.get(node.name) ?? [];
    list.push(task);
    if (list.length > this.maxPerNode) {
      const idx = list.findIndex((t) => t.status === 'stopped');
      if (idx >= 0) this.byUpid.delete(list.splice(idx, 1)[0].upid);
    }
    this.perNode.set(node.name, list);
    this.running.add(task);
    return task;
  }

  /** Runs `body` as the task's worker; the task stops with OK or with the error's message. */
  run(task: SimTask, body: (ctx: TaskContext) => Promise<void>): Promise<void> {
    const ctx: TaskContext = {
      task,
      signal: task.abort.signal,
      sleep: (ms) => sleep(ms, task.abort.signal),
      log: (line) => void task.log.push(line),
    };
    return body(ctx).then(
      () => this.finish(task, 'OK'),
      (e: unknown) => this.finish(task, (e instanceof Error ? e.message : String(e)).trim() || 'unknown error'),
    );
  }

  finish(task: SimTask, exitstatus: string): void {
    if (task.status === 'stopped') return;
    task.status = 'stopped';
    task.exitstatus = exitstatus;
    task.endtime = Math.floor(Date.now() / 1000);
    task.log.push(exitstatus === 'OK' ? 'TASK OK' : `TASK ERROR: ${exitstatus}`);
    this.running.delete(task);
  }

  /** Running tasks of one guest. */
  activeFor(vmid: number): SimTask[] {
    return [...this.running].filter((t) => t.vmid === vmid);
  }

  list(node: string, f: TaskFilter): { total: number; items: SimTask[] } {
    const source = f.source ?? 'archive';
    const statuses = f.statusfilter ? new Set(f.statusfilter.toLowerCase().split(/[,; ]+/).filter(Boolean)) : undefined;
    const user = f.userfilter?.toLowerCase();
    const all = this.perNode.get(node) ?? [];
    const out: SimTask[] = [];
    for (let i = all.length - 1; i >= 0; i--) {
      const t = all[i];
      if (source === 'archive' && t.status === 'running') continue;
      if (source === 'active' && t.status !== 'running') continue;
      if (f.errors && statusClass(t) !== 'error') continue;
      if (statuses && !statuses.has(statusClass(t))) continue;
      if (f.typefilter && t.type !== f.typefilter) continue;
      if (user && !t.user.toLowerCase().includes(user)) continue;
      if (f.vmid !== undefined && t.id !== String(f.vmid)) continue;
      if (f.since !== undefined && t.starttime < f.since) continue;
      if (f.until !== undefined && t.starttime > f.until) continue;
      out.push(t);
    }
    const start = f.start ?? 0;
    const limit = f.limit || 50;
    return { total: out.length, items: out.slice(start, start + limit) };
  }

  /** Stops every running task of a node (it went down): PVE later reports them as "unexpected status". */
  abortNode(node: string): void {
    for (const t of [...this.running]) if (t.node === node) t.abort.abort(new TaskAbort('unexpected status'));
  }
}
