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

/** One guest as a node's listing last showed it. Kept per (node, vmid) and rewritten in place by
 *  each listing: a round's listings held as PveGuest objects until the next round were promoted
 *  (~1 MB of old space a round at 5,000 guests), and so were the observations built from them. */
interface Listed {
  type: GuestType;
  status: string;
  resources: Resources;
  /** The listing of its node that last contained it. */
  listing: number;
}

interface Listing {
  at: number;
  /** Which listing of this node this is: the guests it holds are those marked with it. */
  n: number;
  guests?: Map<number, Listed>;
  error?: { code: string; reason: string };
}

const STATES = new Set<string>(['running', 'stopped', 'paused']);

function describe(e: unknown): { code: string; reason: string } {
  const code = isHomeostatError(e) ? e.code : 'HOMEOSTAT_ERR_PVE_UNAVAILABLE';
  return { code, reason: (e instanceof Error ? e.message : String(e)).slice(0, 1500) };
}

const GUEST_RESOURCES = ['cpu', 'mem', 'maxmem', 'disk', 'maxdisk', 'uptime'] as const;

/** A guest's usage as PVE listed it, written into `into` (absent or invalid figures: undefined). */
function guestResources(g: PveGuest, into: Resources): Resources {
  for (const k of GUEST_RESOURCES) {
    const v = g[k];
    into[k] = typeof v === 'number' && Number.isFinite(v) && v >= 0 ? (k === 'cpu' ? Math.min(v, 1000) : v) : undefined;
  }
  return into;
}

/** `from` copied into `into`. */
function copyResources(from: Resources, into: Resources): Resources {
  for (const k of GUEST_RESOURCES) into[k] = from[k];
  return into;
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
  /** Every node's guests as last listed there (see Listed). */
  private readonly listed = new Map<string, Map<number, Listed>>();
  private listingCount = 0;
  /** The guests map of every observation, and its entries, updated in place round after round
   *  (valid until the next observe()); `observedIn` says which round last set each entry. */
  private readonly found = new Map<number, GuestObservation>();
  private readonly observedIn = new Map<number, number>();
  private rounds = 0;
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
  typesFor(node: string): GuestType[] {
    const types = new Set<GuestType>();
    for (const [vmid, seen] of this.lastSeen) {
      if (seen.node === node) types.add(seen.type);
      else if (!this.listedAtHome(vmid, seen.node)) types.add(seen.type); // missing: look for it everywhere
    }
    return types.size ? [...types] : this.fleetTypes.length ? [this.fleetTypes[0]] : ['lxc'];
  }

  /** The last listing of the node a guest was last seen on contains it. */
  private listedAtHome(vmid: number, node: string): boolean {
    const l = this.listings.get(node);
    return l?.guests !== undefined && l.guests.get(vmid)?.listing === l.n;
  }

  /** A node's listing arrived: its guests rewritten in place (one Listed per guest and node). */
  private store(node: string, guests: readonly PveGuest[]): void {
    const n = ++this.listingCount;
    let byVmid = this.listed.get(node);
    if (!byVmid) this.listed.set(node, (byVmid = new Map()));
    for (const g of guests) {
      const l = byVmid.get(g.vmid);
      if (l) {
        l.type = g.type;
        l.status = g.status;
        guestResources(g, l.resources);
        l.listing = n;
      } else {
        byVmid.set(g.vmid, { type: g.type, status: g.status, resources: guestResources(g, {}), listing: n });
      }
    }
    // guests no longer there (gone, migrated away) leave the node's map
    if (byVmid.size > guests.length) for (const [vmid, l] of byVmid) if (l.listing !== n) byVmid.delete(vmid);
    this.listings.set(node, { at: Date.now(), n, guests: byVmid });
  }

  async observe(): Promise<Observation> {
    const at = Date.now();
    const names = new Set([...this.fleet.nodes.map((n) => n.name), ...this.nodeList.keys()]);
    // Listings first, the node list last: a node that dies while we list shows up offline in this
    // same round, so its guests become "unknown", never "stopped".
    const started: Promise<void>[] = [];
    for (const node of names) {
      if (this.nodeList.get(node)?.status === 'offline') continue; // no use waiting on it; listNodes below says when it is back
      const running = this.inflight.get(node);
      if (running) {
        started.push(running);
        continue;
      }
      const p = this.pve
        .listGuests(node, this.typesFor(node))
        .then((guests) => this.store(node, guests))
        .catch((e: unknown) => void this.listings.set(node, { at: Date.now(), n: ++this.listingCount, error: describe(e) }))
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
      if (n.status === 'offline') this.listings.set(node, { at, n: ++this.listingCount, error: { code: 'HOMEOSTAT_ERR_PVE_UNAVAILABLE', reason: `PVE reports node ${node} offline` } });
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
    const round = ++this.rounds;
    const found = this.found;
    for (const [node, obs] of nodes) {
      if (obs.stale || !obs.reachable) continue;
      const l = this.listings.get(node);
      if (!l?.guests) continue;
      for (const [vmid, g] of l.guests) {
        if (g.listing !== l.n) continue; // not in this node's last listing
        if (!this.fleet.byVmid.has(vmid)) continue; // unmanaged guest: not ours to watch
        const state: GuestState = STATES.has(g.status) ? (g.status as GuestState) : 'unknown';
        this.observe1(round, vmid, node, g.type, state, true, undefined, g.resources);
        const seen = this.lastSeen.get(vmid);
        if (seen) {
          seen.node = node;
          seen.type = g.type;
        } else this.lastSeen.set(vmid, { node, type: g.type });
      }
    }
    for (const spec of this.fleet.guests) {
      if (this.observedIn.get(spec.vmid) === round) continue;
      const seen = this.lastSeen.get(spec.vmid)!;
      const home = nodes.get(seen.node);
      if (!home || home.stale) continue; // nothing new to say this round
      if (!home.reachable) {
        this.observe1(round, spec.vmid, seen.node, seen.type, 'unknown', false, `node ${seen.node} unreachable`);
      } else {
        this.observe1(round, spec.vmid, seen.node, seen.type, 'unknown', true, 'not listed on any reachable node');
      }
    }
    // what this round has nothing to say about leaves the map (a stale node's guests)
    if (found.size > 0) {
      for (const vmid of found.keys()) {
        if (this.observedIn.get(vmid) !== round) {
          found.delete(vmid);
          this.observedIn.delete(vmid);
        }
      }
    }
    return found;
  }

  /** One guest's observation this round, written over last round's object. */
  private observe1(round: number, vmid: number, node: string, type: GuestType, state: GuestState, reachable: boolean, reason?: string, resources?: Resources): void {
    let o = this.found.get(vmid);
    if (!o) {
      o = { vmid, node, type, state, reachable, reason, resources: undefined };
      this.found.set(vmid, o);
    }
    o.node = node;
    o.type = type;
    o.state = state;
    o.reachable = reachable;
    o.reason = reason;
    // the observation's own copy: the listing's is rewritten when the node is next listed
    o.resources = resources ? copyResources(resources, o.resources ?? {}) : undefined;
    this.observedIn.set(vmid, round);
  }
}
