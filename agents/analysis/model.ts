// What analysis believes about the fleet: the last reported state of each guest and node, the
// desired state, and the dependency graph (transitive). `failureOf` is the one rule of what counts
// as a failure: a divergence from the desired state that we can actually see.
import type { ApiRecord, DesiredState, GuestRecord, GuestState, Health, NodeRecord, NodeStatus } from '../../bus/mod.ts';
import { ancestorsOf, type Fleet } from '../../fleet/manifest.ts';

export type Failure = 'crashed' | 'unhealthy';

/** What a rebuild reads from fleet-state: what sensing last reported, and the desired states. */
export interface FleetStateSnapshot {
  /** When it was read (ms). */
  at: number;
  guests: Map<string, GuestRecord>;
  nodes: Map<string, NodeRecord>;
  api?: ApiRecord;
  desired: Map<string, DesiredState>;
}

export interface GuestView {
  vmid: number;
  name: string;
  layer: number;
  node: string;
  state: GuestState;
  health: Health;
  certDaysLeft?: number;
  /** Envelope ts of the last applied report: older replays are ignored. */
  ts: string;
  /** When it was last seen running but unhealthy without interruption (ms). */
  unhealthySince?: number;
}

export interface NodeView {
  node: string;
  status: NodeStatus;
  reachable: boolean;
  downSince?: number;
  ts: string;
}

export class FleetView {
  readonly guests = new Map<number, GuestView>();
  readonly nodes = new Map<string, NodeView>();
  readonly desired = new Map<number, DesiredState>();
  apiAvailable = true;
  /** Envelope ts of the last applied API report. */
  apiTs = '';
  private readonly ancestorCache = new Map<number, number[]>();
  private readonly dependentCache = new Map<number, number[]>();
  private reverse: Map<number, number[]> | undefined;

  constructor(readonly fleet: Fleet) {
    for (const g of fleet.guests) {
      this.guests.set(g.vmid, { vmid: g.vmid, name: g.name, layer: g.layer, node: g.node, state: 'unknown', health: 'unknown', ts: '' });
    }
    for (const n of fleet.nodes) this.nodes.set(n.name, { node: n.name, status: 'unknown', reachable: true, ts: '' });
  }

  has(vmid: number): boolean {
    return this.fleet.byVmid.has(vmid);
  }

  nodeDown(node: string): boolean {
    const n = this.nodes.get(node);
    return !!n && (!n.reachable || n.status === 'offline');
  }

  /** Desired state says: do not care (stopped on purpose, or maintenance). */
  ignored(vmid: number): boolean {
    const d = this.desired.get(vmid);
    return !!d && (d.maintenance || d.state === 'stopped');
  }

  failureOf(vmid: number): Failure | undefined {
    const g = this.guests.get(vmid);
    if (!g || this.ignored(vmid) || this.nodeDown(g.node)) return undefined;
    if (g.state === 'stopped') return 'crashed';
    if (g.state === 'running' && g.health === 'unhealthy') return 'unhealthy';
    return undefined;
  }

  /** Running and healthy, or not wanted running: nothing left to heal. */
  settled(vmid: number): boolean {
    const g = this.guests.get(vmid);
    if (!g) return true;
    if (this.ignored(vmid)) return true;
    return g.state === 'running' && g.health === 'healthy' && !this.nodeDown(g.node);
  }

  /** Every guest `vmid` depends on, directly or not, lowest layer first. */
  ancestors(vmid: number): number[] {
    const hit = this.ancestorCache.get(vmid);
    if (hit) return hit;
    const layer = (v: number) => this.fleet.byVmid.get(v)?.layer ?? 0;
    const out = ancestorsOf(this.fleet.deps, vmid).sort((a, b) => layer(a) - layer(b) || a - b);
    this.ancestorCache.set(vmid, out);
    return out;
  }

  /** Every guest that depends on `vmid`, directly or not. */
  dependents(vmid: number): number[] {
    const hit = this.dependentCache.get(vmid);
    if (hit) return hit;
    if (!this.reverse) {
      this.reverse = new Map();
      for (const [v, ds] of this.fleet.deps) for (const d of ds) this.reverse.set(d, [...(this.reverse.get(d) ?? []), v]);
    }
    const seen = new Set<number>();
    const stack = [...(this.reverse.get(vmid) ?? [])];
    while (stack.length) {
      const d = stack.pop()!;
      if (seen.has(d)) continue;
      seen.add(d);
      stack.push(...(this.reverse.get(d) ?? []));
    }
    const out = [...seen];
    this.dependentCache.set(vmid, out);
    return out;
  }

  dependsOn(vmid: number, ancestor: number): boolean {
    return this.ancestors(vmid).includes(ancestor);
  }

  guestsOn(node: string): GuestView[] {
    return [...this.guests.values()].filter((g) => g.node === node);
  }

  ref(vmid: number): { vmid: number; node: string; name: string } {
    const g = this.guests.get(vmid)!;
    return { vmid, node: g.node, name: g.name };
  }
}
