// The contract between agents and the Proxmox side. `ProxmoxClient` (pve-client.ts) implements
// it over the real `proxmox-api` package, against a real PVE host or the simulator alike.

export type GuestType = 'lxc' | 'qemu';
export interface GuestAddress {
  node: string;
  vmid: number;
  type: GuestType;
}

export interface PveNode {
  node: string;
  status: 'online' | 'offline' | 'unknown';
  cpu?: number;
  maxcpu?: number;
  mem?: number;
  maxmem?: number;
  uptime?: number;
}

export interface PveGuest {
  vmid: number;
  name?: string;
  node: string;
  type: GuestType;
  /** PVE's status field: running | stopped (qemu also paused etc. via qmpstatus). */
  status: 'running' | 'stopped' | string;
  cpu?: number;
  cpus?: number;
  mem?: number;
  maxmem?: number;
  disk?: number;
  maxdisk?: number;
  uptime?: number;
  lock?: string;
  tags?: string;
}

export interface PveTaskStatus {
  upid: string;
  node: string;
  status: 'running' | 'stopped';
  exitstatus?: string;
  type: string;
  id?: string;
  starttime: number;
}

/** One row of a node's task list (/nodes/{node}/tasks). `status` is the exit status once stopped. */
export interface PveTaskEntry {
  upid: string;
  node: string;
  type: string;
  id?: string;
  user?: string;
  starttime: number;
  status?: string;
}

export interface TaskListFilter {
  vmid?: number;
  typefilter?: string;
  /** Unix seconds. */
  since?: number;
  /** archive (finished, PVE's default), active (running) or all. */
  source?: 'archive' | 'active' | 'all';
  limit?: number;
}

export interface WaitOptions {
  timeoutMs?: number;
  pollMs?: number;
  signal?: AbortSignal;
}

export interface ClusterStatusEntry {
  type: 'cluster' | 'node';
  id: string;
  name: string;
  online?: boolean;
  quorate?: boolean;
  nodeid?: number;
  local?: boolean;
}

export interface PveApi {
  version(): Promise<{ version: string; release: string; repoid: string }>;
  listNodes(): Promise<PveNode[]>;
  /** Guests on one node (lxc + qemu). Fails with HOMEOSTAT_ERR_PVE_UNAVAILABLE when that node is unreachable. */
  listGuests(node: string, types?: GuestType[]): Promise<PveGuest[]>;
  /** All guests of the cluster in one call (/cluster/resources?type=vm). */
  clusterGuests(): Promise<PveGuest[]>;
  clusterStatus(): Promise<ClusterStatusEntry[]>;
  guestStatus(g: GuestAddress): Promise<PveGuest>;
  start(g: GuestAddress): Promise<string>;
  stop(g: GuestAddress): Promise<string>;
  shutdown(g: GuestAddress, opts?: { timeoutSec?: number; forceStop?: boolean }): Promise<string>;
  reboot(g: GuestAddress, opts?: { timeoutSec?: number }): Promise<string>;
  migrate(g: GuestAddress, target: string, opts?: { online?: boolean; restart?: boolean }): Promise<string>;
  snapshot(g: GuestAddress, snapname: string, description?: string): Promise<string>;
  rollback(g: GuestAddress, snapname: string, opts?: { start?: boolean }): Promise<string>;
  taskStatus(node: string, upid: string): Promise<PveTaskStatus>;
  /** A node's tasks, newest first (what a caller reads to find out whether a call it got no
   *  answer to started a task). */
  listTasks(node: string, filter?: TaskListFilter): Promise<PveTaskEntry[]>;
  taskLog(node: string, upid: string, limit?: number): Promise<{ n: number; t: string }[]>;
  /** Polls until the task stops; resolves with the final status; exitstatus !== 'OK' → HOMEOSTAT_ERR_PVE_TASK_FAILED;
   *  not stopped within timeoutMs → HOMEOSTAT_ERR_PVE_TIMEOUT; an aborted signal rejects with the signal's reason. */
  waitForTask(node: string, upid: string, opts?: WaitOptions): Promise<PveTaskStatus>;
  haResources(): Promise<{ sid: string; state?: string; group?: string }[]>;
  haStatus(): Promise<{ id: string; type: string; status: string; node?: string; sid?: string; state?: string }[]>;
}
