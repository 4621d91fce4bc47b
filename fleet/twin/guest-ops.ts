// Power operations on guests, run as PVE tasks with the guest's bootMs/shutdownMs.
import type { SimGuest, SimState } from './state.ts';
import type { SimTask, TaskTable } from './tasks.ts';

export class ApiError extends Error {
  constructor(readonly status: number, message: string, readonly errors?: Record<string, string>) {
    super(message);
  }
}

const kind = (g: SimGuest) => (g.type === 'lxc' ? 'CT' : 'VM');
const tname = (g: SimGuest, op: string) => (g.type === 'lxc' ? `vz${op}` : op === 'migrate' ? 'qmigrate' : `qm${op}`);

export class GuestOps {
  constructor(private readonly state: SimState, private readonly tasks: TaskTable, private readonly user: string) {}

  private begin(g: SimGuest, op: string): SimTask {
    if (g.busy) {
      const t = this.tasks.get(g.busy);
      if (t && t.status === 'running') {
        throw new ApiError(500, `can't lock file '/run/lock/${g.type === 'lxc' ? 'lxc' : 'qemu-server'}/pve-config-${g.vmid}.lock' - got timeout`);
      }
    }
    const task = this.tasks.create(g.node, tname(g, op), String(g.vmid), this.user);
    g.busy = task.upid;
    return task;
  }

  private release(g: SimGuest, task: SimTask) {
    if (g.busy === task.upid) g.busy = undefined;
  }

  private requireNode(g: SimGuest) {
    if (!this.state.nodeOnline(g.node)) throw new Error(`node '${g.node}' is offline`);
  }

  start(g: SimGuest): string {
    if (g.status === 'running') throw new ApiError(500, `${kind(g)} ${g.vmid} already running`);
    const task = this.begin(g, 'start');
    task.log.push(`starting ${kind(g)} ${g.vmid}`);
    this.tasks.run(task, [{ afterMs: this.state.scaled(g.spec.bootMs), act: () => {
      this.requireNode(g);
      g.status = 'running';
      g.startedAt = Date.now();
      g.hung = false;
    } }], () => this.release(g, task));
    return task.upid;
  }

  stop(g: SimGuest): string {
    const task = this.begin(g, 'stop');
    task.log.push(`stopping ${kind(g)} ${g.vmid}`);
    this.tasks.run(task, [{ afterMs: this.state.scaled(Math.min(200, g.spec.shutdownMs)), act: () => {
      this.requireNode(g);
      if (g.status !== 'running') throw new Error(`${kind(g)} ${g.vmid} not running`);
      g.status = 'stopped';
      g.hung = false;
    } }], () => this.release(g, task));
    return task.upid;
  }

  shutdown(g: SimGuest, timeoutSec = 60, forceStop = false): string {
    if (g.status !== 'running') throw new ApiError(500, `${kind(g)} ${g.vmid} not running`);
    const task = this.begin(g, 'shutdown');
    task.log.push(`shutting down ${kind(g)} ${g.vmid}`);
    // a hung guest ignores the ACPI/init request: the shutdown times out unless forceStop
    const hungWait = this.state.scaled(Math.min(timeoutSec * 1000, 10_000));
    this.tasks.run(task, [{ afterMs: g.hung ? hungWait : this.state.scaled(g.spec.shutdownMs), act: () => {
      this.requireNode(g);
      if (g.hung && !forceStop) throw new Error(`shutdown of ${kind(g)} ${g.vmid} timed out after ${timeoutSec}s`);
      g.status = 'stopped';
      g.hung = false;
    } }], () => this.release(g, task));
    return task.upid;
  }

  reboot(g: SimGuest): string {
    if (g.status !== 'running') throw new ApiError(500, `${kind(g)} ${g.vmid} not running`);
    const task = this.begin(g, 'reboot');
    task.log.push(`rebooting ${kind(g)} ${g.vmid}`);
    this.tasks.run(task, [
      { afterMs: this.state.scaled(g.spec.shutdownMs), log: 'stopped', act: () => {
        this.requireNode(g);
        g.status = 'stopped';
        g.hung = false;
      } },
      { afterMs: this.state.scaled(g.spec.bootMs), log: 'started', act: () => {
        this.requireNode(g);
        g.status = 'running';
        g.startedAt = Date.now();
      } },
    ], () => this.release(g, task));
    return task.upid;
  }

  migrate(g: SimGuest, target: string, opts: { online?: boolean; restart?: boolean }): string {
    const to = this.state.nodes.get(target);
    if (!to) throw new ApiError(500, `no such cluster node '${target}'`);
    if (target === g.node) throw new ApiError(500, `target is local node.`);
    if (!to.online) throw new ApiError(500, `target node '${target}' is not online`);
    const sourceDown = !this.state.nodeOnline(g.node);
    const wasRunning = g.status === 'running' && !sourceDown;
    if (wasRunning && g.type === 'lxc' && !opts.restart) throw new ApiError(500, `CT ${g.vmid} is running - use online migration or restart mode`);
    if (wasRunning && g.type === 'qemu' && !opts.online) throw new ApiError(500, `VM ${g.vmid} is running - use option '--online' to migrate a running VM`);
    const task = this.begin(g, 'migrate');
    task.log.push(`starting migration of ${kind(g)} ${g.vmid} to node '${target}'`);
    const steps: { afterMs: number; log?: string; act?: () => void }[] = [];
    if (wasRunning) steps.push({ afterMs: this.state.scaled(g.spec.shutdownMs), log: 'shutdown for migration', act: () => (g.status = 'stopped') });
    steps.push({ afterMs: this.state.scaled(300), log: `migration to ${target} finished`, act: () => {
      if (!this.state.nodeOnline(target)) throw new Error(`target node '${target}' went offline`);
      g.node = target;
      if (sourceDown) g.status = 'stopped';
      task.node = task.node; // the task stays on the source node's list, as in PVE
    } });
    if (wasRunning) steps.push({ afterMs: this.state.scaled(g.spec.bootMs), log: 'started on target', act: () => {
      g.status = 'running';
      g.startedAt = Date.now();
      g.hung = false;
    } });
    this.tasks.run(task, steps, () => this.release(g, task));
    return task.upid;
  }

  snapshot(g: SimGuest, name: string, description = ''): string {
    if (g.snapshots.some((s) => s.name === name)) throw new ApiError(500, `snapshot name '${name}' already used`);
    const task = this.begin(g, 'snapshot');
    this.tasks.run(task, [{ afterMs: this.state.scaled(200), act: () => {
      g.snapshots.push({ name, description, snaptime: Math.floor(Date.now() / 1000) });
    } }], () => this.release(g, task));
    return task.upid;
  }

  rollback(g: SimGuest, name: string, start: boolean): string {
    if (!g.snapshots.some((s) => s.name === name)) throw new ApiError(500, `snapshot '${name}' does not exist`);
    const task = this.begin(g, 'rollback');
    const steps: { afterMs: number; log?: string; act?: () => void }[] = [{ afterMs: this.state.scaled(Math.min(200, g.spec.shutdownMs)), log: `rolled back to ${name}`, act: () => {
      this.requireNode(g);
      g.status = 'stopped';
      g.hung = false;
    } }];
    if (start) steps.push({ afterMs: this.state.scaled(g.spec.bootMs), act: () => {
      g.status = 'running';
      g.startedAt = Date.now();
    } });
    this.tasks.run(task, steps, () => this.release(g, task));
    return task.upid;
  }
}
