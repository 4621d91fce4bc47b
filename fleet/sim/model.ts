// The simulator's in-memory world: nodes, guests, their phases, fault overlays and metrics.
// Everything is O(1) per guest lookup; metrics move on one timer for the whole fleet.
import type { Fleet, GuestSpec, NodeSpec } from '../manifest.ts';
import type { GuestType } from '../pve-types.ts';
import { RrdHistory } from './rrd.ts';

/** What the guest is doing. `starting`: the start task prepares it (PVE says stopped); `booting`: its
 *  process runs (PVE says running, about a second into the start) but its services do not answer
 *  yet; `running`: up and serving. PVE reports `running` for booting/running/stopping. */
export type Phase = 'stopped' | 'starting' | 'booting' | 'running' | 'stopping';

export const GiB = 1024 ** 3;
export const MiB = 1024 ** 2;

/** Small, fast, seedable PRNG (mulberry32): the same seed gives the same metrics walk. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface GuestFaults {
  unhealthy: number;
  diskFill: number;
  cpuSpike: number;
  memSpike: number;
  certExpiring: number;
}

export interface SimSnapshot {
  name: string;
  description: string;
  snaptime: number;
  parent?: string;
  config: GuestConfig;
}

export interface GuestConfig {
  hostname: string;
  memory: number;
  swap: number;
  cores: number;
  description?: string;
  tags?: string;
  onboot: boolean;
  /** PVE's `hookscript`: a snippet volume id, e.g. `local:snippets/homeostat-hook`. */
  hookscript?: string;
}

export interface HaResource {
  sid: string;
  type: 'ct' | 'vm';
  state: 'started' | 'stopped' | 'enabled' | 'disabled' | 'ignored';
  group?: string;
  comment?: string;
  max_restart: number;
  max_relocate: number;
  failback: boolean;
}

export interface SimGuest {
  readonly vmid: number;
  readonly type: GuestType;
  readonly layer: number;
  node: string;
  bootMs: number;
  shutdownMs: number;
  config: GuestConfig;
  maxdisk: number;
  phase: Phase;
  /** ms epoch when the guest last became running (for PVE: its process started). */
  startedAt: number;
  /** Bumped on every start and stop, so a boot that was overtaken does not finish later. */
  runSeq: number;
  /** PVE config lock (migrate, snapshot, rollback, …), shown as `lock`. */
  lock?: string;
  hung: boolean;
  faults: GuestFaults;
  snapshots: SimSnapshot[];
  /** The snapshot the current state descends from (PVE's `parent` of "current"). */
  parentSnap?: string;
  ha?: HaResource;
  certDaysBase: number;
  // metrics: fractions of the maximum; counters in bytes
  cpu: number;
  memFrac: number;
  diskFrac: number;
  netin: number;
  netout: number;
  diskread: number;
  diskwrite: number;
  /** What `.../rrddata` answers from. */
  rrd: RrdHistory;
}

export interface SimNode {
  readonly name: string;
  readonly spec: NodeSpec;
  readonly nodeid: number;
  readonly ip: string;
  /** Active node-down faults; the node is online when 0. */
  downCount: number;
  fenced: boolean;
  bootedAt: number;
  guests: Set<SimGuest>;
  cpu: number;
  mem: number;
  rrd: RrdHistory;
}

export class SimModel {
  readonly nodes = new Map<string, SimNode>();
  readonly guests = new Map<number, SimGuest>();
  readonly rand: () => number;
  readonly clusterName: string;
  /** SHA-256 fingerprint of the API certificate, shown as every node's ssl_fingerprint (HTTPS only). */
  fingerprint?: string;
  private ticker?: NodeJS.Timeout;

  constructor(fleet: Fleet, opts: { seed?: number; initial?: 'running' | 'stopped'; now?: number } = {}) {
    this.rand = seededRandom(opts.seed ?? 1);
    this.clusterName = fleet.name.replace(/[^a-zA-Z0-9-]/g, '-').slice(0, 15) || 'homeostat';
    const now = opts.now ?? Date.now();
    fleet.nodes.forEach((spec, i) => {
      this.nodes.set(spec.name, {
        name: spec.name, spec, nodeid: i + 1, ip: `10.10.0.${11 + i}`, downCount: 0, fenced: false,
        bootedAt: now - (3 + Math.floor(this.rand() * 40)) * 86_400_000, guests: new Set(), cpu: 0.05, mem: 2 * GiB,
        rrd: new RrdHistory(),
      });
    });
    for (const spec of fleet.guests) this.addGuest(spec, opts.initial ?? 'running', now);
    this.tick(1);
  }

  addGuest(spec: GuestSpec, initial: 'running' | 'stopped', now = Date.now()): SimGuest {
    const r = this.rand;
    const g: SimGuest = {
      vmid: spec.vmid, type: spec.type, layer: spec.layer, node: spec.node, bootMs: spec.bootMs, shutdownMs: spec.shutdownMs,
      config: { hostname: spec.name, memory: spec.memMiB, swap: 512, cores: spec.cores, description: spec.role || undefined, onboot: false },
      maxdisk: Math.round(spec.diskGiB * GiB),
      phase: initial,
      startedAt: initial === 'running' ? now - Math.floor((1 + r() * 29) * 86_400_000) : 0,
      runSeq: 0,
      hung: false,
      faults: { unhealthy: 0, diskFill: 0, cpuSpike: 0, memSpike: 0, certExpiring: 0 },
      snapshots: [],
      certDaysBase: 30 + Math.floor(r() * 330),
      cpu: 0.02 + r() * 0.1, memFrac: 0.2 + r() * 0.3, diskFrac: 0.15 + r() * 0.4,
      netin: Math.floor(r() * 5e9), netout: Math.floor(r() * 5e9), diskread: Math.floor(r() * 2e9), diskwrite: Math.floor(r() * 2e9),
      rrd: new RrdHistory(),
    };
    if (spec.hookscript) g.config.hookscript = spec.hookscript;
    this.guests.set(g.vmid, g);
    this.nodes.get(g.node)!.guests.add(g);
    return g;
  }

  online(node: SimNode): boolean {
    return node.downCount === 0;
  }

  /** Quorum: more than half of the nodes online (PVE's votequorum with one vote per node). */
  quorate(): boolean {
    let up = 0;
    for (const n of this.nodes.values()) if (this.online(n)) up++;
    return up * 2 > this.nodes.size;
  }

  /** Node that answers the API (the "local" node in /cluster/status): the first one online. */
  localNode(): SimNode {
    for (const n of this.nodes.values()) if (this.online(n)) return n;
    return this.nodes.values().next().value!;
  }

  moveGuest(g: SimGuest, target: string): void {
    this.nodes.get(g.node)?.guests.delete(g);
    g.node = target;
    this.nodes.get(target)!.guests.add(g);
  }

  /** PVE's view of a guest's state. */
  pveStatus(g: SimGuest): 'running' | 'stopped' {
    return g.phase === 'running' || g.phase === 'booting' || g.phase === 'stopping' ? 'running' : 'stopped';
  }

  uptimeSec(g: SimGuest, now = Date.now()): number {
    return this.pveStatus(g) === 'running' ? Math.max(0, Math.floor((now - g.startedAt) / 1000)) : 0;
  }

  certDaysLeft(g: SimGuest): number {
    return g.faults.certExpiring > 0 ? 5 : g.certDaysBase;
  }

  /** Effective usage, fault overlays applied. */
  usage(g: SimGuest): { cpu: number; mem: number; disk: number } {
    const running = this.pveStatus(g) === 'running';
    const maxmem = g.config.memory * MiB;
    const cpu = !running ? 0 : g.faults.cpuSpike > 0 ? Math.min(1, 0.97 + (g.cpu % 0.02)) : g.hung ? 0.0 : g.cpu;
    const mem = !running ? 0 : Math.round(maxmem * (g.faults.memSpike > 0 ? 0.95 + (g.memFrac % 0.02) : g.memFrac));
    const disk = Math.round(g.maxdisk * (g.faults.diskFill > 0 ? 0.97 : g.diskFrac));
    return { cpu, mem, disk };
  }

  start(intervalMs = 1000): void {
    this.ticker ??= setInterval(() => this.tick(intervalMs / 1000), intervalMs);
    this.ticker.unref();
  }

  stop(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
  }

  /** One step of the random walk for the whole fleet, recorded in the RRD history: O(guests). */
  tick(dtSec: number): void {
    const r = this.rand;
    const walk = (v: number, lo: number, hi: number, step: number) => Math.min(hi, Math.max(lo, v + (r() - 0.5) * step));
    const nodeCpu = new Map<string, number>();
    const nodeMem = new Map<string, number>();
    const nodeNet = new Map<string, number>();
    const dt = Math.max(dtSec, 1e-3);
    for (const g of this.guests.values()) {
      const running = this.pveStatus(g) === 'running';
      let netin = 0;
      let netout = 0;
      let diskread = 0;
      let diskwrite = 0;
      if (running) {
        g.cpu = walk(g.cpu, 0.005, 0.6, 0.04);
        g.memFrac = walk(g.memFrac, 0.1, 0.75, 0.01);
        g.diskFrac = walk(g.diskFrac, 0.05, 0.8, 0.0005);
        netin = Math.floor(r() * 200_000 * dtSec);
        netout = Math.floor(r() * 150_000 * dtSec);
        diskread = Math.floor(r() * 50_000 * dtSec);
        diskwrite = Math.floor(r() * 80_000 * dtSec);
        g.netin += netin;
        g.netout += netout;
        g.diskread += diskread;
        g.diskwrite += diskwrite;
      }
      const u = this.usage(g);
      if (running) {
        nodeCpu.set(g.node, (nodeCpu.get(g.node) ?? 0) + u.cpu * g.config.cores);
        nodeMem.set(g.node, (nodeMem.get(g.node) ?? 0) + u.mem);
        nodeNet.set(g.node, (nodeNet.get(g.node) ?? 0) + netin + netout);
      }
      g.rrd.add({
        cpu: u.cpu, maxcpu: g.config.cores, mem: u.mem, maxmem: g.config.memory * MiB, disk: u.disk, maxdisk: g.maxdisk,
        netin: netin / dt, netout: netout / dt, diskread: diskread / dt, diskwrite: diskwrite / dt,
      });
    }
    for (const n of this.nodes.values()) {
      n.cpu = Math.min(1, 0.01 + r() * 0.02 + (nodeCpu.get(n.name) ?? 0) / n.spec.cpus);
      n.mem = Math.min(n.spec.memGiB * GiB, Math.round(2 * GiB + (nodeMem.get(n.name) ?? 0)));
      if (!this.online(n)) continue; // a dead node's pvestatd writes nothing
      const net = (nodeNet.get(n.name) ?? 0) / dt;
      n.rrd.add({
        cpu: n.cpu, maxcpu: n.spec.cpus, iowait: 0.0012, loadavg: n.cpu * n.spec.cpus, memused: n.mem, memtotal: Math.round(n.spec.memGiB * GiB),
        swapused: 0, swaptotal: 8 * GiB, rootused: 12 * GiB, roottotal: 100 * GiB, netin: net / 2, netout: net / 2,
      });
    }
  }
}
