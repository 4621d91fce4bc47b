// Fault injection outside the PVE namespace: /sim/fleet, /sim/faults, /sim/health/{vmid}, /sim/fence/{node}.
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { ApiError } from './guest-ops.ts';
import { FAULT_KINDS, type SimFault, type SimState } from './state.ts';

export const FaultRequest = z.object({
  kind: z.enum(FAULT_KINDS),
  target: z.union([z.string().min(1).max(64), z.number().int()]).transform(String),
  durationMs: z.number().int().min(1).max(24 * 3600 * 1000).optional(),
  params: z.record(z.string(), z.unknown()).default({}),
});

const GUEST_KINDS = new Set(['crash', 'hang', 'unhealthy', 'disk-fill', 'cpu-spike', 'mem-spike', 'cert-expiring']);

export interface SimReply {
  status: number;
  body: unknown;
  delayMs?: number;
}

export class FaultInjector {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  constructor(private readonly state: SimState) {}

  inject(input: unknown): SimFault {
    const r = FaultRequest.safeParse(input);
    if (!r.success) {
      const i = r.error.issues[0];
      throw new ApiError(400, `${i.path.join('.') || 'body'}: ${i.message}`);
    }
    const { kind, target, durationMs, params } = r.data;
    const s = this.state;
    if (GUEST_KINDS.has(kind)) {
      const g = s.guests.get(Number(target));
      if (!g) throw new ApiError(400, `target: no guest ${target} (kind ${kind} needs a vmid)`);
      if (kind === 'crash') {
        g.status = 'stopped';
        g.hung = false;
      }
      if (kind === 'hang') g.hung = true;
    } else if (kind === 'node-down') {
      const n = s.nodes.get(target);
      if (!n) throw new ApiError(400, `target: no node ${target}`);
      n.online = false;
      n.fenced = false;
      // everything on it dies with it
      for (const g of s.guests.values()) if (g.node === target) {
        g.status = 'stopped';
        g.hung = false;
      }
    } else if (target !== '*' && !s.nodes.has(target)) {
      throw new ApiError(400, `target: expected a node name or "*" for ${kind}`);
    }
    const f: SimFault = { id: randomUUID().slice(0, 8), kind, target, durationMs, params, createdAt: Date.now(), expiresAt: durationMs ? Date.now() + durationMs : undefined };
    s.faults.set(f.id, f);
    if (durationMs) this.timers.set(f.id, setTimeout(() => this.heal(f.id), durationMs));
    return f;
  }

  heal(id: string): boolean {
    const f = this.state.faults.get(id);
    if (!f) return false;
    this.state.faults.delete(id);
    const t = this.timers.get(id);
    if (t) clearTimeout(t);
    this.timers.delete(id);
    if (f.kind === 'hang') {
      const g = this.state.guests.get(Number(f.target));
      if (g && !this.state.activeFaults('hang', f.target).length) g.hung = false;
    }
    if (f.kind === 'node-down' && !this.state.activeFaults('node-down', f.target).length) {
      const n = this.state.nodes.get(f.target);
      if (n) {
        n.online = true;
        n.fenced = false;
        n.bootedAt = Date.now();
      }
    }
    return true;
  }

  list(): SimFault[] {
    const now = Date.now();
    return [...this.state.faults.values()].filter((f) => f.expiresAt === undefined || f.expiresAt > now);
  }

  stop(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}

export function simFleet(state: SimState) {
  return {
    cluster: state.clusterName,
    nodes: [...state.nodes.values()].map((n) => ({ name: n.name, online: n.online, fenced: n.fenced, role: n.spec.role, capacity: n.spec.capacity })),
    guests: [...state.guests.values()].map((g) => {
      const h = state.health(g);
      const m = state.metrics(g);
      return {
        vmid: g.vmid, name: g.name, node: g.node, type: g.type, layer: g.spec.layer, dependsOn: state.fleet.deps.get(g.vmid) ?? [],
        state: state.nodeOnline(g.node) ? g.status : 'unknown', status: g.status, healthy: h.ok, health: h.ok ? 'healthy' : 'unhealthy', reason: h.reason,
        bootMs: g.spec.bootMs, shutdownMs: g.spec.shutdownMs, protected: g.spec.protected, busy: g.busy,
        cpu: m.cpu, mem: m.mem, maxmem: m.maxmem, disk: m.disk, maxdisk: m.maxdisk, certDaysLeft: state.certDaysLeft(g),
      };
    }),
    faults: [...state.faults.values()],
  };
}

export function simHealth(state: SimState, vmid: number): SimReply {
  const g = state.guests.get(vmid);
  if (!g) return { status: 404, body: { status: 'unknown', reason: `no guest ${vmid}` } };
  const h = state.health(g);
  if (h.ok) return { status: 200, body: { status: 'ok', vmid, name: g.name, certDaysLeft: state.certDaysLeft(g) } };
  // an unreachable node answers slowly, like a connection that never completes quickly
  return { status: 503, body: { status: 'unhealthy', vmid, reason: h.reason, certDaysLeft: state.certDaysLeft(g) }, delayMs: state.nodeOnline(g.node) ? 0 : 50 };
}

export function fence(state: SimState, node: string): SimReply {
  const n = state.nodes.get(node);
  if (!n) return { status: 404, body: { error: `no node ${node}` } };
  if (n.online) return { status: 409, body: { error: `node ${node} is online; refusing to fence a live node` } };
  n.fenced = true;
  return { status: 200, body: { node, fenced: true } };
}
