// Guest power and lifecycle operations with PVE's semantics: API-level prechecks answer at once
// (500 "CT 101 already running"), the work runs as a task holding the guest's config flock, and
// durations come from the guest's bootMs / shutdownMs × timeScale. A start is done (task OK,
// status running) about a second in, when the guest's process runs; its services answer once
// bootMs has passed. The guest's hookscript runs on every phase, as PVE runs it.
import type { HookPhase, HookRunner } from './hooks.ts';
import { type SimGuest, type SimModel, type SimNode } from './model.ts';
import { paramError, pveDie } from './pve-error.ts';
import { GuestFlock, TaskAbort, type TaskContext, type TaskRegistry } from './tasks.ts';

type Verb = 'start' | 'stop' | 'shutdown' | 'reboot' | 'migrate' | 'snapshot' | 'rollback' | 'delsnapshot' | 'create';
const LXC_TYPES: Record<Verb, string> = { start: 'vzstart', stop: 'vzstop', shutdown: 'vzshutdown', reboot: 'vzreboot', migrate: 'vzmigrate', snapshot: 'vzsnapshot', rollback: 'vzrollback', delsnapshot: 'vzdelsnapshot', create: 'vzcreate' };
const QEMU_TYPES: Record<Verb, string> = { start: 'qmstart', stop: 'qmstop', shutdown: 'qmshutdown', reboot: 'qmreboot', migrate: 'qmigrate', snapshot: 'qmsnapshot', rollback: 'qmrollback', delsnapshot: 'qmdelsnapshot', create: 'qmcreate' };
/** How long PVE's start task takes to get the guest's process running (lxc-start / qemu up). */
const PROCESS_START_MS = 1000;
const BOOTING_TYPES = new Set(['vzstart', 'vzreboot', 'qmstart', 'qmreboot', 'vzrollback', 'qmrollback', 'vzmigrate']);

const pad = (n: number) => String(n).padStart(2, '0');
function stamp(d = new Date()): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  return `${pad(Math.floor(s / 3600))}:${pad(Math.floor(s / 60) % 60)}:${pad(s % 60)}`;
}

export class GuestOps {
  private readonly flocks = new Map<number, GuestFlock>();

  constructor(
    private readonly model: SimModel,
    private readonly tasks: TaskRegistry,
    private readonly timeScale: number,
    private readonly hooks: HookRunner,
  ) {}

  label(g: SimGuest): 'CT' | 'VM' {
    return g.type === 'lxc' ? 'CT' : 'VM';
  }

  private ms(n: number): number {
    return n * this.timeScale;
  }

  private lockFile(g: SimGuest): string {
    return g.type === 'lxc' ? `/run/lock/lxc/pve-config-${g.vmid}.lock` : `/var/lock/qemu-server/lock-${g.vmid}.conf`;
  }

  private checkLock(g: SimGuest): void {
    if (g.lock) throw new TaskAbort(`${this.label(g)} is locked (${g.lock})`);
  }

  private checkQuorum(): void {
    if (!this.model.quorate()) throw pveDie('cluster not ready - no quorum?');
  }

  private noSkiplock(p: Record<string, unknown>): void {
    if (p.skiplock) throw paramError({ skiplock: 'Only root may use this option.' });
  }

  /** Forks the worker: it takes the guest's flock (10 s like PVE) and runs `body`. */
  private fork(g: SimGuest, node: SimNode, verb: Verb, user: string, body: (ctx: TaskContext) => Promise<void>): string {
    const type = (g.type === 'lxc' ? LXC_TYPES : QEMU_TYPES)[verb];
    const task = this.tasks.create(node, type, String(g.vmid), user, g.vmid);
    let flock = this.flocks.get(g.vmid);
    if (!flock) this.flocks.set(g.vmid, (flock = new GuestFlock()));
    const lock = flock;
    void this.tasks.run(task, async (ctx) => {
      const release = await lock.acquire(this.ms(10_000), ctx.signal, this.lockFile(g));
      try {
        // while this task waited for the flock, a migration may have moved the guest away
        if (g.node !== node.name || !this.model.guests.has(g.vmid)) {
          throw new TaskAbort(`Configuration file 'nodes/${node.name}/${g.type === 'lxc' ? 'lxc' : 'qemu-server'}/${g.vmid}.conf' does not exist`);
        }
        await body(ctx);
      } finally {
        release();
      }
    });
    return task.upid;
  }

  /** Runs the guest's hookscript inside a task: output into the task log; a failed pre-start aborts. */
  private async hook(g: SimGuest, phase: HookPhase, ctx: TaskContext): Promise<void> {
    const r = await this.hooks.run(g, phase);
    for (const line of r.output) ctx.log(line);
    if (!r.error) return;
    if (phase === 'pre-start') throw new TaskAbort(r.error);
    ctx.log(`WARN: ${r.error}`);
  }

  /** pre-start, the process starts (~1 s: PVE says running, the task ends after post-start),
   *  services answer once bootMs has passed since the start began. */
  private async boot(g: SimGuest, ctx: TaskContext): Promise<void> {
    const t0 = Date.now();
    await this.hook(g, 'pre-start', ctx);
    g.phase = 'starting';
    g.hung = false;
    const run = ++g.runSeq;
    const bootMs = this.ms(g.bootMs);
    await ctx.sleep(Math.min(this.ms(PROCESS_START_MS), bootMs / 2));
    g.phase = 'booting';
    g.startedAt = Date.now();
    const up = () => {
      if (g.runSeq === run && g.phase === 'booting') g.phase = 'running';
    };
    const left = bootMs - (Date.now() - t0);
    if (left > 0) setTimeout(up, left).unref();
    else up();
    await this.hook(g, 'post-start', ctx);
  }

  /** The guest is down: whatever boot was in flight is void; post-stop runs (qmeventd / the LXC stop hook). */
  private down(g: SimGuest): void {
    const wasUp = g.phase !== 'stopped';
    g.phase = 'stopped';
    g.hung = false;
    g.runSeq++;
    if (wasUp) this.hooks.fire(g, 'post-stop');
  }

  /** pre-stop, inside the stop/shutdown task, while the guest still runs. */
  private async preStop(g: SimGuest, ctx: TaskContext): Promise<void> {
    if (this.model.pveStatus(g) === 'running') await this.hook(g, 'pre-stop', ctx);
  }

  start(g: SimGuest, node: SimNode, user: string, p: Record<string, unknown>): string {
    this.noSkiplock(p);
    if (g.type === 'lxc' && this.model.pveStatus(g) === 'running') throw pveDie(`CT ${g.vmid} already running`);
    this.checkQuorum();
    return this.fork(g, node, 'start', user, async (ctx) => {
      this.checkLock(g);
      if (this.model.pveStatus(g) === 'running' || g.phase === 'starting') throw new TaskAbort(`${this.label(g)} ${g.vmid} already running`);
      await this.boot(g, ctx);
    });
  }

  stop(g: SimGuest, node: SimNode, user: string, p: Record<string, unknown>): string {
    this.noSkiplock(p);
    if (this.model.pveStatus(g) !== 'running') throw pveDie(`${this.label(g)} ${g.vmid} not running`);
    // overrule-shutdown: abort the guest's shutdown tasks, so the stop does not wait for their flock
    const shutdownType = g.type === 'lxc' ? 'vzshutdown' : 'qmshutdown';
    const overruled = p['overrule-shutdown'] === true ? this.tasks.activeFor(g.vmid).filter((t) => t.type === shutdownType) : [];
    for (const t of overruled) t.abort.abort(new TaskAbort('interrupted by signal'));
    return this.fork(g, node, 'stop', user, async (ctx) => {
      if (overruled.length) ctx.log(`overruled ${shutdownType} tasks: ${overruled.map((t) => t.upid).join(', ')}`);
      this.checkLock(g);
      await this.preStop(g, ctx);
      await ctx.sleep(this.ms(100));
      this.down(g);
    });
  }

  shutdown(g: SimGuest, node: SimNode, user: string, p: Record<string, unknown>): string {
    this.noSkiplock(p);
    if (this.model.pveStatus(g) !== 'running') throw pveDie(`${this.label(g)} ${g.vmid} not running`);
    const timeoutMs = this.ms(((p.timeout as number | undefined) ?? 60) * 1000);
    const force = p.forceStop === true;
    return this.fork(g, node, 'shutdown', user, async (ctx) => {
      this.checkLock(g);
      await this.preStop(g, ctx);
      g.phase = 'stopping';
      const needs = g.hung ? Infinity : this.ms(g.shutdownMs);
      await ctx.sleep(Math.min(needs, timeoutMs));
      if (g.phase !== 'stopping') return; // crashed or stopped meanwhile: it is down either way
      if (needs <= timeoutMs || force) {
        this.down(g);
        return;
      }
      g.phase = 'running';
      throw new TaskAbort(g.type === 'lxc' ? 'container did not stop' : 'VM quit/powerdown failed - got timeout');
    });
  }

  reboot(g: SimGuest, node: SimNode, user: string, _p: Record<string, unknown>): string {
    // sic: PVE says "VM" here for containers too
    if (this.model.pveStatus(g) !== 'running') throw pveDie(`VM ${g.vmid} not running`);
    return this.fork(g, node, 'reboot', user, async (ctx) => {
      this.checkLock(g);
      await this.preStop(g, ctx);
      g.phase = 'stopping';
      await ctx.sleep(this.ms(g.shutdownMs));
      if (g.phase !== 'stopping') throw new TaskAbort(`${this.label(g)} ${g.vmid} not running`);
      this.down(g);
      await this.boot(g, ctx);
    });
  }

  migrate(g: SimGuest, node: SimNode, user: string, p: Record<string, unknown>): string {
    const target = String(p.target);
    if (target === g.node) throw paramError({ target: 'target is local node.' });
    const tnode = this.model.nodes.get(target);
    if (!tnode) throw pveDie(`no such cluster node '${target}'`);
    this.checkQuorum();
    const online = p.online === true;
    const restart = p.restart === true;
    return this.fork(g, node, 'migrate', user, async (ctx) => {
      const t0 = Date.now();
      const say = (line: string) => ctx.log(`${stamp()} ${line}`);
      say(`starting migration of ${this.label(g)} ${g.vmid} to node '${target}' (${tnode.ip})`);
      let wasRunning = false;
      let locked = false;
      try {
        this.checkLock(g);
        if (!this.model.online(tnode)) throw new TaskAbort(`Can't connect to destination address using public key`);
        wasRunning = this.model.pveStatus(g) === 'running';
        if (wasRunning && g.type === 'lxc') {
          if (online) throw new TaskAbort('lxc live migration is currently not implemented');
          if (!restart) throw new TaskAbort('running container can only be migrated in restart mode at /usr/share/perl5/PVE/LXC/Migrate.pm line 53.');
        }
        if (wasRunning && g.type === 'qemu' && !online) throw new TaskAbort("can't migrate running VM without --online");
        g.lock = 'migrate';
        locked = true;
        if (wasRunning && g.type === 'lxc') {
          say(`shutdown CT ${g.vmid}`);
          await this.preStop(g, ctx);
          g.phase = 'stopping';
          await ctx.sleep(this.ms(g.shutdownMs));
          this.down(g);
        }
        say(`copying local disk images`);
        await ctx.sleep(this.ms(g.type === 'qemu' && wasRunning ? 2000 : 1000));
        this.model.moveGuest(g, target);
        g.lock = undefined;
        locked = false;
        say('start final cleanup');
        if (wasRunning && g.type === 'lxc') {
          say(`start container on target node`);
          await this.boot(g, ctx);
        }
        say(`migration finished successfully (duration ${duration(Date.now() - t0)})`);
      } catch (e) {
        if (locked && g.lock === 'migrate') g.lock = undefined;
        if (!(e instanceof TaskAbort) || e.message === 'unexpected status') throw e;
        say(`ERROR: migration aborted (duration ${duration(Date.now() - t0)}): ${e.message}`);
        throw new TaskAbort('migration aborted');
      }
    });
  }

  snapshot(g: SimGuest, node: SimNode, user: string, p: Record<string, unknown>): string {
    const name = String(p.snapname);
    if (name === 'current' || name === 'vzdump') throw pveDie(`unable to use snapshot name '${name}' (reserved name)`);
    return this.fork(g, node, 'snapshot', user, async (ctx) => {
      this.checkLock(g);
      if (g.snapshots.some((s) => s.name === name)) throw new TaskAbort(`snapshot name '${name}' already used`);
      g.lock = 'snapshot';
      try {
        await ctx.sleep(this.ms(300));
        g.snapshots.push({ name, description: String(p.description ?? ''), snaptime: Math.floor(Date.now() / 1000), parent: g.parentSnap, config: { ...g.config } });
        g.parentSnap = name;
      } finally {
        g.lock = undefined;
      }
    });
  }

  rollback(g: SimGuest, node: SimNode, user: string, p: Record<string, unknown>): string {
    const name = String(p.snapname);
    return this.fork(g, node, 'rollback', user, async (ctx) => {
      const snap = g.snapshots.find((s) => s.name === name);
      if (!snap) throw new TaskAbort(`snapshot '${name}' does not exist`);
      this.checkLock(g);
      if (this.model.pveStatus(g) === 'running') {
        await this.preStop(g, ctx);
        await ctx.sleep(this.ms(100));
        this.down(g);
      }
      g.lock = 'rollback';
      try {
        await ctx.sleep(this.ms(500));
        g.config = { ...snap.config };
        g.parentSnap = snap.name;
      } finally {
        g.lock = undefined;
      }
      if (p.start === true) await this.boot(g, ctx);
    });
  }

  delsnapshot(g: SimGuest, node: SimNode, user: string, p: Record<string, unknown>): string {
    const name = String(p.snapname);
    return this.fork(g, node, 'delsnapshot', user, async (ctx) => {
      const snap = g.snapshots.find((s) => s.name === name);
      if (!snap) throw new TaskAbort(`snapshot '${name}' does not exist`);
      // force: remove it even while another snapshot operation holds the guest
      if (p.force !== true) this.checkLock(g);
      g.lock = 'snapshot-delete';
      try {
        await ctx.sleep(this.ms(300));
        g.snapshots = g.snapshots.filter((s) => s !== snap);
        for (const s of g.snapshots) if (s.parent === name) s.parent = snap.parent;
        if (g.parentSnap === name) g.parentSnap = snap.parent;
      } finally {
        g.lock = undefined;
      }
    });
  }

  create(node: SimNode, type: 'lxc' | 'qemu', user: string, p: Record<string, unknown>): string {
    const vmid = Number(p.vmid);
    const existing = this.model.guests.get(vmid);
    if (existing) throw pveDie(`${type === 'lxc' ? 'CT' : 'VM'} ${vmid} already exists on node '${existing.node}'`);
    this.checkQuorum();
    const name = String(p.hostname ?? p.name ?? `${type === 'lxc' ? 'CT' : 'VM'}${vmid}`);
    const g = this.model.addGuest({
      vmid, name, node: node.name, type, layer: 0, bootMs: 3000, shutdownMs: 1500, protected: false, role: '',
      memMiB: Number(p.memory ?? 512), cores: Number(p.cores ?? 1), diskGiB: 8,
    }, 'stopped');
    g.lock = 'create';
    return this.fork(g, node, 'create', user, async (ctx) => {
      try {
        await ctx.sleep(this.ms(1000));
      } finally {
        g.lock = undefined;
      }
      if (p.start === true) await this.boot(g, ctx);
    });
  }

  /** A crash: the guest is down now; a boot in progress fails the way PVE reports it. */
  crash(g: SimGuest): void {
    this.down(g);
    const msg = g.type === 'lxc' ? `startup for container '${g.vmid}' failed` : 'start failed: QEMU exited with code 1';
    for (const t of this.tasks.activeFor(g.vmid)) if (BOOTING_TYPES.has(t.type)) t.abort.abort(new TaskAbort(msg));
  }
}
