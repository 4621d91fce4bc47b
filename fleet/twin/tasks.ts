// PVE tasks: UPIDs in PVE's exact format, running/stopped status, exit status and log lines.
export interface SimTask {
  upid: string;
  node: string;
  type: string;
  id: string;
  user: string;
  pid: number;
  pstart: number;
  starttime: number;
  endtime?: number;
  status: 'running' | 'stopped';
  exitstatus?: string;
  log: string[];
}

const hex8 = (n: number) => (n >>> 0).toString(16).toUpperCase().padStart(8, '0');

export class TaskTable {
  readonly tasks = new Map<string, SimTask>();
  private readonly byNode = new Map<string, SimTask[]>();
  private pid = 100_000;
  private readonly timers = new Set<NodeJS.Timeout>();

  create(node: string, type: string, id: string, user: string): SimTask {
    const pid = this.pid++;
    const starttime = Math.floor(Date.now() / 1000);
    const pstart = Math.floor(process.uptime() * 100) + pid;
    const upid = `UPID:${node}:${hex8(pid)}:${hex8(pstart)}:${hex8(starttime)}:${type}:${id}:${user}:`;
    const task: SimTask = { upid, node, type, id, user, pid, pstart, starttime, status: 'running', log: [] };
    this.tasks.set(upid, task);
    const list = this.byNode.get(node) ?? [];
    list.push(task);
    if (list.length > 5000) this.tasks.delete(list.shift()!.upid);
    this.byNode.set(node, list);
    return task;
  }

  finish(task: SimTask, error?: string): void {
    if (task.status === 'stopped') return;
    if (error) task.log.push(`TASK ERROR: ${error}`);
    else task.log.push('TASK OK');
    task.status = 'stopped';
    task.exitstatus = error ?? 'OK';
    task.endtime = Math.floor(Date.now() / 1000);
  }

  /** Run `steps` after `delayMs` each; a step may throw to fail the task. */
  run(task: SimTask, steps: { afterMs: number; log?: string; act?: () => void }[], onDone?: (error?: string) => void): void {
    const next = (i: number) => {
      if (i >= steps.length) {
        this.finish(task);
        onDone?.();
        return;
      }
      const t = setTimeout(() => {
        this.timers.delete(t);
        const step = steps[i];
        try {
          step.act?.();
          if (step.log) task.log.push(step.log);
          next(i + 1);
        } catch (e) {
          const msg = (e as Error).message;
          this.finish(task, msg);
          onDone?.(msg);
        }
      }, steps[i].afterMs);
      this.timers.add(t);
    };
    next(0);
  }

  list(node: string): SimTask[] {
    return this.byNode.get(node) ?? [];
  }

  get(upid: string): SimTask | undefined {
    return this.tasks.get(upid);
  }

  stop(): void {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

export function parseUpid(upid: string): { node: string } | undefined {
  const m = /^UPID:([a-zA-Z0-9-]+):[0-9A-F]{8}:[0-9A-F]{8}:[0-9A-F]{8}:[^:]+:[^:]*:[^:]+:$/.exec(upid);
  return m ? { node: m[1] } : undefined;
}
