// ProxmoxClient: the one PveApi every agent uses, over the real `proxmox-api` package, against a
// real PVE host or the simulator alike. Transport concerns (TLS, timeout, retries, error codes)
// are in pve-transport.ts; this file maps PVE's shapes to ours.
import type { Proxmox } from 'proxmox-api';
import { HomeostatError, silentLogger } from '../core/mod.ts';
import { parsePveConnection, type PveClientOptions } from './pve-config.ts';
import { waitForTaskEnd } from './pve-task.ts';
import { PveTransport } from './pve-transport.ts';
import type { ClusterStatusEntry, GuestAddress, GuestType, PveApi, PveGuest, PveNode, PveTaskEntry, PveTaskStatus, TaskListFilter, WaitOptions } from './pve-types.ts';

export { pveClientOptionsFromEnv, PveConnection, type PveClientOptions, type PveRequestEvent } from './pve-config.ts';
export { parseUpid, upidNode, type Upid } from './pve-task.ts';

type HaResource = Awaited<ReturnType<PveApi['haResources']>>[number];
type HaStatus = Awaited<ReturnType<PveApi['haStatus']>>[number];

// Fields PVE returns for a guest, in lists and in status/current alike (all optional on the wire).
interface WireGuest {
  vmid?: number | string;
  name?: string;
  status?: string;
  cpu?: number;
  cpus?: number;
  maxcpu?: number;
  mem?: number;
  maxmem?: number;
  disk?: number;
  maxdisk?: number;
  uptime?: number;
  lock?: string;
  tags?: string;
}

function toGuest(w: WireGuest, node: string, type: GuestType, vmid?: number): PveGuest {
  const g: PveGuest = { vmid: vmid ?? Number(w.vmid), node, type, status: w.status ?? 'unknown' };
  if (w.name !== undefined) g.name = w.name;
  const cpus = w.cpus ?? w.maxcpu;
  if (cpus !== undefined) g.cpus = Number(cpus);
  for (const k of ['cpu', 'mem', 'maxmem', 'disk', 'maxdisk', 'uptime'] as const) if (w[k] !== undefined) g[k] = Number(w[k]);
  if (w.lock) g.lock = w.lock;
  if (w.tags) g.tags = w.tags;
  return g;
}

const flag = (v: unknown): boolean | undefined => (v === undefined || v === null ? undefined : v === true || v === 1 || v === '1');

function expectUpid(v: unknown, what: string): string {
  if (typeof v === 'string' && v.startsWith('UPID:')) return v;
  throw new HomeostatError('HOMEOSTAT_ERR_PVE_UNAVAILABLE', `${what}: PVE answered ${JSON.stringify(v)?.slice(0, 80)} where a task id (UPID:…) was expected`);
}

export class ProxmoxClient implements PveApi {
  private readonly t: PveTransport;

  constructor(opts: PveClientOptions) {
    const { log, onRequest, ...conn } = opts;
    this.t = new PveTransport(parsePveConnection(conn), log ?? silentLogger, onRequest);
  }

  /** Closes kept-alive connections; call on shutdown. */
  close(): Promise<void> {
    return this.t.close();
  }

  async version(): Promise<{ version: string; release: string; repoid: string }> {
    const v = await this.t.call((api) => api.version.$get());
    return { version: v.version, release: v.release, repoid: v.repoid };
  }

  async listNodes(): Promise<PveNode[]> {
    const nodes = await this.t.call((api) => api.nodes.$get());
    return nodes.map((n) => {
      const out: PveNode = { node: n.node, status: n.status === 'online' || n.status === 'offline' ? n.status : 'unknown' };
      for (const k of ['cpu', 'maxcpu', 'mem', 'maxmem', 'uptime'] as const) if (n[k] !== undefined) out[k] = Number(n[k]);
      return out;
    });
  }

  async listGuests(node: string, types: GuestType[] = ['lxc', 'qemu']): Promise<PveGuest[]> {
    const lists = await Promise.all(
      types.map(async (type) => {
        const wire: WireGuest[] = type === 'lxc'
          ? await this.t.call((api) => api.nodes.$(node).lxc.$get())
          : await this.t.call((api) => api.nodes.$(node).qemu.$get());
        return wire.map((w) => toGuest(w, node, type));
      }),
    );
    return lists.flat();
  }

  async clusterGuests(): Promise<PveGuest[]> {
    const res = await this.t.call((api) => api.cluster.resources.$get({ type: 'vm' }));
    return res
      .filter((r) => (r.type === 'lxc' || r.type === 'qemu') && r.node !== undefined)
      .map((r) => toGuest(r as WireGuest, r.node as string, r.type as GuestType));
  }

  async clusterStatus(): Promise<ClusterStatusEntry[]> {
    const entries = await this.t.call((api) => api.cluster.status.$get());
    return entries.map((e) => {
      const out: ClusterStatusEntry = { type: e.type === 'cluster' ? 'cluster' : 'node', id: e.id, name: e.name };
      const online = flag(e.online);
      const quorate = flag(e.quorate);
      const local = flag(e.local);
      if (online !== undefined) out.online = online;
      if (quorate !== undefined) out.quorate = quorate;
      if (local !== undefined) out.local = local;
      if (e.nodeid !== undefined) out.nodeid = Number(e.nodeid);
      return out;
    });
  }

  async guestStatus(g: GuestAddress): Promise<PveGuest> {
    const w: WireGuest = g.type === 'lxc'
      ? await this.t.call((api) => api.nodes.$(g.node).lxc.$(g.vmid).status.current.$get())
      : await this.t.call((api) => api.nodes.$(g.node).qemu.$(g.vmid).status.current.$get());
    return toGuest(w, g.node, g.type, g.vmid);
  }

  private lxc(api: Proxmox.Api, g: GuestAddress) {
    return api.nodes.$(g.node).lxc.$(g.vmid);
  }

  private qemu(api: Proxmox.Api, g: GuestAddress) {
    return api.nodes.$(g.node).qemu.$(g.vmid);
  }

  private async task(what: string, fn: (api: Proxmox.Api) => Promise<unknown>): Promise<string> {
    return expectUpid(await this.t.call(fn), what);
  }

  start(g: GuestAddress): Promise<string> {
    return this.task(`start ${g.vmid}`, (api) => (g.type === 'lxc' ? this.lxc(api, g).status.start.$post() : this.qemu(api, g).status.start.$post()));
  }

  stop(g: GuestAddress): Promise<string> {
    return this.task(`stop ${g.vmid}`, (api) => (g.type === 'lxc' ? this.lxc(api, g).status.stop.$post() : this.qemu(api, g).status.stop.$post()));
  }

  shutdown(g: GuestAddress, opts: { timeoutSec?: number; forceStop?: boolean } = {}): Promise<string> {
    const p = { timeout: opts.timeoutSec, forceStop: opts.forceStop };
    return this.task(`shutdown ${g.vmid}`, (api) => (g.type === 'lxc' ? this.lxc(api, g).status.shutdown.$post(p) : this.qemu(api, g).status.shutdown.$post(p)));
  }

  reboot(g: GuestAddress, opts: { timeoutSec?: number } = {}): Promise<string> {
    const p = { timeout: opts.timeoutSec };
    return this.task(`reboot ${g.vmid}`, (api) => (g.type === 'lxc' ? this.lxc(api, g).status.reboot.$post(p) : this.qemu(api, g).status.reboot.$post(p)));
  }

  /** lxc: `restart` moves a running container by restarting it on the target; qemu: `online` live-migrates. */
  migrate(g: GuestAddress, target: string, opts: { online?: boolean; restart?: boolean } = {}): Promise<string> {
    return this.task(`migrate ${g.vmid}`, (api) =>
      g.type === 'lxc'
        ? this.lxc(api, g).migrate.$post({ target, online: opts.online, restart: opts.restart })
        : this.qemu(api, g).migrate.$post({ target, online: opts.online }),
    );
  }

  snapshot(g: GuestAddress, snapname: string, description?: string): Promise<string> {
    const p = { snapname, description };
    return this.task(`snapshot ${g.vmid}`, (api) => (g.type === 'lxc' ? this.lxc(api, g).snapshot.$post(p) : this.qemu(api, g).snapshot.$post(p)));
  }

  rollback(g: GuestAddress, snapname: string, opts: { start?: boolean } = {}): Promise<string> {
    const p = { start: opts.start };
    return this.task(`rollback ${g.vmid}`, (api) =>
      g.type === 'lxc' ? this.lxc(api, g).snapshot.$(snapname).rollback.$post(p) : this.qemu(api, g).snapshot.$(snapname).rollback.$post(p),
    );
  }

  taskStatus(node: string, upid: string): Promise<PveTaskStatus> {
    return this.taskStatusWith(node, upid);
  }

  private async taskStatusWith(node: string, upid: string, signal?: AbortSignal): Promise<PveTaskStatus> {
    const s = await this.t.call((api) => api.nodes.$(node).tasks.$(upid).status.$get(), signal);
    const out: PveTaskStatus = { upid: s.upid, node: s.node, status: s.status === 'running' ? 'running' : 'stopped', type: s.type, id: s.id, starttime: Number(s.starttime) };
    if (s.exitstatus !== undefined) out.exitstatus = s.exitstatus;
    return out;
  }

  async listTasks(node: string, filter: TaskListFilter = {}): Promise<PveTaskEntry[]> {
    const rows = await this.t.call((api) => api.nodes.$(node).tasks.$get({ ...filter }));
    return rows.map((r) => {
      const out: PveTaskEntry = { upid: r.upid, node: r.node, type: r.type, starttime: Number(r.starttime) };
      if (r.id !== undefined) out.id = String(r.id);
      if (r.user !== undefined) out.user = String(r.user);
      if (r.status !== undefined) out.status = String(r.status);
      return out;
    });
  }

  async taskLog(node: string, upid: string, limit?: number): Promise<{ n: number; t: string }[]> {
    const lines = await this.t.call((api) => api.nodes.$(node).tasks.$(upid).log.$get(limit === undefined ? undefined : { limit }));
    return lines.map((l) => ({ n: Number(l.n), t: String(l.t) }));
  }

  waitForTask(node: string, upid: string, opts?: WaitOptions): Promise<PveTaskStatus> {
    return waitForTaskEnd(upid, {
      status: (signal) => this.taskStatusWith(node, upid, signal),
      // PVE gives no "tail"; task logs of guest actions are short, so read a generous page.
      lastLogLines: async (count) => (await this.taskLog(node, upid, 500)).slice(-count).map((l) => l.t),
    }, opts);
  }

  async haResources(): Promise<HaResource[]> {
    const res = await this.t.call((api) => api.cluster.ha.resources.$get());
    return res.map((r) => {
      const out: HaResource = { sid: r.sid };
      if (typeof r.state === 'string') out.state = r.state;
      if (typeof r.group === 'string') out.group = r.group;
      return out;
    });
  }

  async haStatus(): Promise<HaStatus[]> {
    const res = await this.t.call((api) => api.cluster.ha.status.current.$get());
    return res.map((r) => {
      const out: HaStatus = { id: r.id, type: String(r.type), status: r.status };
      for (const k of ['node', 'sid', 'state'] as const) if (typeof r[k] === 'string') out[k] = r[k];
      return out;
    });
  }
}

/** The PveApi over `proxmox-api` for `opts` (see pve-config.ts); options are validated here (HOMEOSTAT_ERR_CONFIG). */
export function createPveClient(opts: PveClientOptions): ProxmoxClient {
  return new ProxmoxClient(opts);
}
