// Fault injection: what /sim/faults creates and heals. Guest faults are counters on the guest (so
// two overlapping faults heal independently); API faults are short lists consulted per request.
import { z } from 'zod';
import { type Logger } from '../../core/mod.ts';
import type { GuestOps } from './guest-ops.ts';
import type { GuestFaults, SimGuest, SimModel, SimNode } from './model.ts';
import type { TaskRegistry } from './tasks.ts';

export const FAULT_KINDS = ['crash', 'hang', 'unhealthy', 'node-down', 'api-error', 'api-slow', 'disk-fill', 'cpu-spike', 'mem-spike', 'cert-expiring'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

export const FaultRequest = z.strictObject({
  kind: z.enum(FAULT_KINDS),
  target: z.union([z.string().min(1), z.number().int()]).transform(String),
  durationMs: z.number().int().positive().max(7 * 86_400_000).optional(),
  params: z.record(z.string(), z.unknown()).optional(),
});
export type FaultRequest = z.infer<typeof FaultRequest>;

export interface Fault {
  id: string;
  kind: FaultKind;
  target: string;
  params: Record<string, unknown>;
  createdAt: string;
  durationMs?: number;
  expiresAt?: string;
}

/** A fault request the simulator refuses (HTTP 400). */
export class FaultRequestError extends Error {}

const COUNTERS: Partial<Record<FaultKind, keyof GuestFaults>> = {
  unhealthy: 'unhealthy', 'disk-fill': 'diskFill', 'cpu-spike': 'cpuSpike', 'mem-spike': 'memSpike', 'cert-expiring': 'certExpiring',
};

interface Active {
  fault: Fault;
  guest?: SimGuest;
  node?: SimNode;
  timer?: NodeJS.Timeout;
}

export class FaultRegistry {
  private readonly active = new Map<string, Active>();
  private readonly apiErrors: Active[] = [];
  private readonly apiSlow: Active[] = [];
  private seq = 0;

  constructor(
    private readonly model: SimModel,
    private readonly ops: GuestOps,
    private readonly tasks: TaskRegistry,
    private readonly log: Logger,
  ) {}

  list(): Fault[] {
    return [...this.active.values()].map((a) => a.fault);
  }

  private guest(target: string): SimGuest {
    const g = /^\d+$/.test(target) ? this.model.guests.get(Number(target)) : [...this.model.guests.values()].find((x) => x.config.hostname === target);
    if (!g) throw new FaultRequestError(`target: no guest ${target} in the simulated fleet`);
    return g;
  }

  private node(target: string): SimNode {
    const n = this.model.nodes.get(target);
    if (!n) throw new FaultRequestError(`target: no node '${target}' in the simulated fleet (nodes: ${[...this.model.nodes.keys()].join(', ')})`);
    return n;
  }

  inject(body: unknown): Fault {
    const parsed = FaultRequest.safeParse(body);
    if (!parsed.success) {
      const i = parsed.error.issues[0];
      const where = i.path.length ? i.path.join('.') : 'body';
      const hint = i.path[0] === 'kind' ? ` (kinds: ${FAULT_KINDS.join(', ')})` : '';
      throw new FaultRequestError(`${where}: ${i.message}${hint}`);
    }
    const req = parsed.data;
    const params = { ...(req.params ?? {}) };
    const a: Active = { fault: { id: `fault-${++this.seq}`, kind: req.kind, target: req.target, params, createdAt: new Date().toISOString() } };
    if (req.kind === 'api-error' || req.kind === 'api-slow') {
      if (req.target !== '*') a.node = this.node(req.target);
      if (req.kind === 'api-slow') {
        const d = params.delayMs ?? 3000;
        if (typeof d !== 'number' || !Number.isFinite(d) || d < 0 || d > 600_000) throw new FaultRequestError('params.delayMs: expected a number of milliseconds between 0 and 600000');
        params.delayMs = d;
      }
    } else if (req.kind === 'node-down') {
      a.node = this.node(req.target);
    } else {
      a.guest = this.guest(req.target);
    }
    this.apply(a);
    if (req.durationMs) {
      a.fault.durationMs = req.durationMs;
      a.fault.expiresAt = new Date(Date.now() + req.durationMs).toISOString();
      a.timer = setTimeout(() => this.heal(a.fault.id), req.durationMs);
      a.timer.unref();
    }
    this.active.set(a.fault.id, a);
    this.log.info({ fault: a.fault }, `fault injected: ${a.fault.kind} on ${a.fault.target}`);
    return a.fault;
  }

  heal(id: string): Fault | undefined {
    const a = this.active.get(id);
    if (!a) return undefined;
    this.active.delete(id);
    if (a.timer) clearTimeout(a.timer);
    this.unapply(a);
    this.log.info({ fault: a.fault }, `fault healed: ${a.fault.kind} on ${a.fault.target}`);
    return a.fault;
  }

  /** A node going down or coming back, for node-down faults and for POST /nodes/{node}/status. */
  nodeDown(n: SimNode): void {
    n.downCount++;
    if (n.downCount > 1) return;
    this.tasks.abortNode(n.name);
    // a dead node runs no hooks: its guests are simply gone
    for (const g of n.guests) {
      g.phase = 'stopped';
      g.hung = false;
      g.runSeq++;
    }
  }

  nodeUp(n: SimNode): void {
    if (n.downCount === 0) return;
    n.downCount--;
    if (n.downCount > 0) return;
    n.fenced = false;
    n.bootedAt = Date.now();
  }

  private apply(a: Active): void {
    const { kind } = a.fault;
    const counter = COUNTERS[kind];
    if (counter) a.guest!.faults[counter]++;
    else if (kind === 'crash') this.ops.crash(a.guest!);
    else if (kind === 'hang') a.guest!.hung = this.model.pveStatus(a.guest!) === 'running';
    else if (kind === 'node-down') this.nodeDown(a.node!);
    else if (kind === 'api-error') this.apiErrors.push(a);
    else if (kind === 'api-slow') this.apiSlow.push(a);
  }

  private unapply(a: Active): void {
    const { kind } = a.fault;
    const counter = COUNTERS[kind];
    if (counter) a.guest!.faults[counter] = Math.max(0, a.guest!.faults[counter] - 1);
    else if (kind === 'hang') a.guest!.hung = false;
    else if (kind === 'node-down') this.nodeUp(a.node!);
    else if (kind === 'api-error') this.apiErrors.splice(this.apiErrors.indexOf(a), 1);
    else if (kind === 'api-slow') this.apiSlow.splice(this.apiSlow.indexOf(a), 1);
  }

  /** API faults for one request: `node` is the path's node, if any. */
  apiEffects(node?: string): { error?: Fault; delayMs: number } {
    let delayMs = 0;
    for (const a of this.apiSlow) if (!a.node || a.node.name === node) delayMs = Math.max(delayMs, a.fault.params.delayMs as number);
    const err = this.apiErrors.find((a) => !a.node || a.node.name === node);
    return { error: err?.fault, delayMs };
  }

  stop(): void {
    for (const a of this.active.values()) if (a.timer) clearTimeout(a.timer);
  }
}
