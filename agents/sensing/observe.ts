// One sensing round against the PVE API: one `listGuests` per node (only the guest types that can
// be there), in parallel, then `listNodes()` once. A node that fails is unreachable at once; a
// node still answering after the round deadline is left "stale" for this round, not declared
// dead, and its call is not repeated while it is in flight.
import { isHomeostatError } from '../../core/mod.ts';
import { type GuestState, type NodeStatus, type Resources } from '../../bus/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import type { GuestType, PveApi, PveGuest, PveNode } from '../../fleet/pve-types.ts';

export interface NodeObservation {
  node: string;
  status: NodeStatus;
  reachable: boolean;
  /** The listing is still in flight: keep what was known. */
  stale: boolean;
  reason?: string;
  resources?: Resources;
}

export interface GuestObservation {
  vmid: number;
  node: string;
  type: GuestType;
  state: GuestState;
  reachable: boolean;
  reason?: string;
  resources?: Resources;
}

export type ApiStatus = { ok: true; reason?: string } | { ok: false; code: string; reason: string };

export interface Observation {
  at: number;
  api: ApiStatus;
  nodes: Map<string, NodeObservation>;
  guests: Map<number, GuestObservation>;
}

interface Listing {
  at: number;
  guests?: PveGuest[];
  error?: { code: string; reason: string };
}

const STATES = new Set<string>(['running', 'stopped', 'paused']);

function describe(e: unknown): { code: string; reason: string } {
  const code = isHomeostatError(e) ? e.code : 'HOMEOSTAT_ERR_PVE_UNAVAILABLE';
  return { code, reason: (e instanceof Error ? e.message : String(e)).slice(0, 1500) };
}

function guestResources(g: PveGuest): Resources {
  const r: Resources = {};
  for (const k of ['cpu', 'mem', 'maxmem', 'disk', 'maxdisk', 'uptime'] as const) {
    const v = g[k];
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0) r[k] = k === 'cpu' ? Math.min(v, 1000) : v;
  }
  return r;
}

function nodeResources(n: PveNode): Resources {
  const r: Resources = {};
  for (const k of ['cpu', 'mem', 'maxmem', 'uptime'] as const) {
    const v = n[k];
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0) r[k] = k === 'cpu' ? Math.min(v, 1000) : v;
  }
  return r;
}

export class PveObserver {
  private readonly inflight = new Map<string, Promise<void>>();
  private readonly listings = new Map<string, Listing>();
  /** Where each guest was last seen, so a migrated guest is followed and its type is asked for. */
  private readonly lastSeen = new Map<number, { node: string; type: GuestType }>();
  private readonly fleetTypes: GuestType[];
  /** The last answer of listNodes. */
  private nodeList = new Map<string, PveNode>();

  constructor(
    private readonly pve: PveApi,
    private readonly fleet: Fleet,
    private readonly roundDeadlineMs: number,
    /** host:port of the PVE endpoint, named in outage reasons (which API is down?). */
    private readonly origin = 'PVE API',
  ) {
    this.fleetTypes = [...new Set(fleet.guests.map((g) => g.type))];
    for (const g of fleet.guests) this.lastSeen.set(g.vmid, { node: g.node, type: g.type });
  }

  /** Number of PVE requests a round makes: one per node (per guest type there) plus listNodes. */
  typesFor(node: string, listed = this.listedAtHome()): GuestType[] {
    const types = new Set<GuestType>();
    for (const [vmid, seen] of this.lastSeen) {
      if (seen.node === node) types.add(seen.type);
      else if (!listed.has(vmid)) types.add(seen.type); // missing: look for it everywhere
    }
    return types.size ? [...types] : this.fleetTypes.length ? [this.fleetTypes[0]] : ['lxc'];
  }

  /** Guests the last listing of the node they were last seen on contains (one pass, not one
   *  listing scan per guest: that was quadratic in a 5,000-guest fleet). */
  private listedAtHome(): Set<number> {
    const out = new Set<number>();
    for (const [node, l] of this.listings) {
      for (const g of l.guests ?? []) if (this.lastSeen.get(g.vmid)?.node === node) out.add(g.vmid);
    }
    return out;
  }

  async observe(): Promise<Observation> {
    const at = Date.now();
    const names = new Set([...this.fleet.nodes.map((n) => n.name), ...this.nodeList.keys()]);
    // Listings first, the node list last: a node that dies while we list shows up offline in this
    // same round, so its guests become "unknown", never "stopped".
    const started: Promise<void>[] = [];
    const listedNow = this.listedAtHome();
    for (const node of names) {
      if (this.nodeList.get(node)?.status === 'offline') continue; // no use waiting on it; listNodes below says when it is back
      const running = this.inflight.get(node);
      if (running) {
        started.push(running);
        continue;
      }
      const p = this.pve
        .listGuests(node, this.typesFor(node, listedNow))
        .then((guests) => void this.listings.set(node, { at: Date.now(), guests }))
        .catch((e: unknown) => void this.listings.set(node, { at: Date.now(), error: describe(e) }))
        .finally(() => this.inflight.delete(node));
      this.inflight.set(node, p);
      started.push(p);
    }
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(started), new Promise<void>((r) => (timer = setTimeout(r, this.roundDeadlineMs)))]);
    clearTimeout(timer);

    let listed: PveNode[];
    try {
      listed = await this.pve.listNodes();
    } catch (e) {
      const d = describe(e);
      return { at, api: { ok: false, code: d.code, reason: `${this.origin}: ${d.reason}` }, nodes: new Map(), guests: new Map() };
    }
    const byName = new Map(listed.map((n) => [n.node, n]));
    this.nodeList = byName;
    for (const node of byName.keys()) names.add(node);
    for (const [node, n] of byName) {
      if (n.status === 'offline') this.listings.set(node, { at, error: { code: 'HOMEOSTAT_ERR_PVE_UNAVAILABLE', reason: `PVE reports node ${node} offline` } });
    }

    const nodes = new Map<string, NodeObservation>();
    for (const node of names) {
      const l = this.listings.get(node);
      const n = byName.get(node);
      const status: NodeStatus = n?.status ?? 'unknown';
      const stale = !l || l.at < at;
      const obs: NodeObservation = { node, status, reachable: stale ? true : !l.error, stale };
      if (!stale && l.error) obs.reason = `${l.error.code}: ${l.error.reason}`;
      if (n) obs.resources = nodeResources(n);
      nodes.set(node, obs);
    }
    return { at, api: { ok: true, reason: `${this.origin} answers` }, nodes, guests: this.guestsFrom(nodes) };
  }

  private guestsFrom(nodes: Map<string, NodeObservation>): Map<number, GuestObservation> {
    const found = new Map<number, GuestObservation>();
    for (const [node, obs] of nodes) {
      if (obs.stale || !obs.reachable) continue;
      for (const g of this.listings.get(node)?.guests ?? []) {
        if (!this.fleet.byVmid.has(g.vmid)) continue; // unmanaged guest: not ours to watch
        const state: GuestState = STATES.has(g.status) ? (g.status as GuestState) : 'unknown';
        found.set(g.vmid, { vmid: g.vmid, node, type: g.type, state, reachable: true, resources: guestResources(g) });
        this.lastSeen.set(g.vmid, { node, type: g.type });
      }
    }
    for (const spec of this.fleet.guests) {
      if (found.has(spec.vmid)) continue;
      const seen = this.lastSeen.get(spec.vmid)!;
      const home = nodes.get(seen.node);
      if (!home || home.stale) continue; // nothing new to say this round
      if (!home.reachable) {
        found.set(spec.vmid, { vmid: spec.vmid, node: seen.node, type: seen.type, state: 'unknown', reachable: false, reason: `node ${seen.node} unreachable` });
      } else {
        found.set(spec.vmid, { vmid: spec.vmid, node: seen.node, type: seen.type, state: 'unknown', reachable: true, reason: 'not listed on any reachable node' });
      }
    }
    return found;
  }
}
