// The simulator's in-memory world: nodes, guests, faults, and metrics that drift plausibly.
// Metrics are computed lazily on read (no timers per guest), so 1,000 guests cost nothing idle.
import type { Fleet, GuestSpec, NodeSpec } from '../manifest.ts';

export const FAULT_KINDS = ['crash', 'hang', 'unhealthy', 'node-down', 'api-error', 'api-slow', 'disk-fill', 'cpu-spike', 'mem-spike', 'cert-expiring'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export interface SimFault {
  id: string;
  kind: FaultKind;
  target: string;
  durationMs?: number;
  params: Record<string, unknown>;
  createdAt: number;
  expiresAt?: number;
}

export interface SimNode {
  name: string;
  spec: NodeSpec;
  online: boolean;
  fenced: boolean;
  bootedAt: number;
}

export interface SimGuest {
  spec: GuestSpec;
  vmid: number;
  name: string;
  node: string;
  type: 'lxc' | 'qemu';
  status: 'running' | 'stopped';
  startedAt?: number;
  /** Running but its service is wedged: health fails until a restart. */
  hung: boolean;
  /** UPID of the task holding the guest, if any. */
  busy?: string;
  snapshots: { name: string; description: string; snaptime: number }[];
  seed: number;
  haManaged: boolean;
}

export class SimState {
  readonly nodes = new Map<string, SimNode>();
  readonly guests = new Map<number, SimGuest>();
  readonly faults = new Map<string, SimFault>();
  readonly fleet: Fleet;
  readonly timeScale: number;
  readonly clusterName = 'homeostat-sim';

  constructor(fleet: Fleet, timeScale = 1) {
    this.fleet = fleet;
    this.timeScale = timeScale;
    const now = Date.now();
    for (const n of fleet.nodes) this.nodes.set(n.name, { name: n.name, spec: n, online: true, fenced: false, bootedAt: now - 86_400_000 * 3 });
    fleet.guests.forEach((g, i) => {
      this.guests.set(g.vmid, {
        spec: g, vmid: g.vmid, name: g.name, node: g.node, type: g.type, status: 'running', startedAt: now - 3_600_000 * (1 + (i % 24)),
        hung: false, snapshots: [], seed: (g.vmid * 2654435761) % 2 ** 32, haManaged: false,
      });
    });
  }

  scaled(ms: number): number {
    return Math.max(1, Math.round(ms * this.timeScale));
  }

  activeFaults(kind: FaultKind, target?: string): SimFault[] {
    const now = Date.now();
    const out: SimFault[] = [];
    for (const f of this.faults.values()) {
      if (f.expiresAt !== undefined && f.expiresAt <= now) continue;
      if (f.kind === kind && (target === undefined || f.target === target || f.target === '*')) out.push(f);
    }
    return out;
  }

  hasFault(kind: FaultKind, target: string): boolean {
    return this.activeFaults(kind, target).length > 0;
  }

  nodeOnline(name: string): boolean {
    return this.nodes.get(name)?.online ?? false;
  }

  /** What the guest's own /health says. */
  health(g: SimGuest): { ok: boolean; reason?: string } {
    if (!this.nodeOnline(g.node)) return { ok: false, reason: `node ${g.node} unreachable` };
    if (g.status !== 'running') return { ok: false, reason: 'guest not running' };
    if (g.hung) return { ok: false, reason: 'service hung (no response from /health)' };
    if (this.hasFault('unhealthy', String(g.vmid))) return { ok: false, reason: 'health check failing' };
    return { ok: true };
  }

  certDaysLeft(g: SimGuest): number {
    return this.hasFault('cert-expiring', String(g.vmid)) ? 5 : 60 + (g.seed % 200);
  }

  /** cpu fraction, memory and disk bytes, at this moment: a smooth wobble around a per-guest base. */
  metrics(g: SimGuest, now = Date.now()) {
    const spec = g.spec;
    const maxmem = spec.memMiB * 1024 * 1024;
    const maxdisk = Math.round(spec.diskGiB * 1024 ** 3);
    const running = g.status === 'running' && this.nodeOnline(g.node);
    const wobble = (period: number, phase: number) => (Math.sin(now / period + (g.seed % 1000) / 100 + phase) + 1) / 2;
    const base = 0.05 + ((g.seed >> 8) % 30) / 100;
    let cpu = running ? base * (0.6 + 0.8 * wobble(17_000, 0)) : 0;
    let memFrac = running ? 0.25 + ((g.seed >> 4) % 35) / 100 + 0.05 * wobble(60_000, 1) : 0;
    let diskFrac = 0.3 + ((g.seed >> 12) % 40) / 100 + 0.01 * wobble(600_000, 2);
    const id = String(g.vmid);
    if (running && this.hasFault('cpu-spike', id)) cpu = 0.97;
    if (running && this.hasFault('mem-spike', id)) memFrac = 0.95;
    if (this.hasFault('disk-fill', id)) diskFrac = 0.97;
    if (running && g.hung) cpu = Math.max(cpu, 0.01);
    const uptime = running && g.startedAt ? Math.floor((now - g.startedAt) / 1000) : 0;
    const traffic = running ? Math.floor((now - (g.startedAt ?? now)) / 1000) * (1000 + (g.seed % 5000)) : 0;
    return {
      cpu: Math.round(cpu * 10_000) / 10_000,
      cpus: spec.cores,
      mem: Math.round(maxmem * memFrac),
      maxmem,
      disk: Math.round(maxdisk * diskFrac),
      maxdisk,
      maxswap: 512 * 1024 * 1024,
      uptime,
      netin: traffic,
      netout: Math.floor(traffic / 3),
      diskread: Math.floor(traffic / 2),
      diskwrite: Math.floor(traffic / 4),
    };
  }

  nodeMetrics(n: SimNode, now = Date.now()) {
    const guests = [...this.guests.values()].filter((g) => g.node === n.name && g.status === 'running');
    const maxmem = n.spec.memGiB * 1024 ** 3;
    const mem = Math.min(maxmem, 2 * 1024 ** 3 + guests.reduce((s, g) => s + this.metrics(g, now).mem, 0));
    const cpu = Math.min(1, 0.02 + guests.reduce((s, g) => s + this.metrics(g, now).cpu * g.spec.cores, 0) / n.spec.cpus);
    return { cpu: Math.round(cpu * 10_000) / 10_000, maxcpu: n.spec.cpus, mem, maxmem, uptime: Math.floor((now - n.bootedAt) / 1000), disk: 20 * 1024 ** 3, maxdisk: 100 * 1024 ** 3 };
  }
}
