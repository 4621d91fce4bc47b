// What sensing knows about the fleet, and what changed since the last round. `apply` is pure
// bookkeeping: it turns one observation (plus probe results) into the events, metric samples and
// KV records to write; only *changes* become events.
import { kvKeys, subjects, type ApiRecord, type GuestEvent, type GuestRecord, type NodeEvent, type NodeRecord, type Resources } from '../../bus/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import type { Observation, GuestObservation, NodeObservation } from './observe.ts';
import type { ProbeResult } from './probe.ts';

export type Emission =
  | { kind: 'event'; subject: string; type: string; data: GuestEvent | NodeEvent | ApiRecord; key: string }
  | { kind: 'kv'; key: string; value: GuestRecord | NodeRecord | ApiRecord };

/** What a metric sample is made of: a guest's record (vmid) or a node's (no vmid). The sample is
 *  encoded when it is sent (publish.ts): no sample object per guest per round waits in between. */
export type MetricSource = Pick<GuestRecord, 'node' | 'resources'> & { vmid?: number };

/** The share of the fleet one sensing replica reports (see partition.ts). */
export interface Scope {
  owns(node: string): boolean;
  /** Report the PVE API's availability (a replica that holds at least one node). */
  reportsApi: boolean;
}

export interface Emissions {
  ts: string;
  api: Emission[];
  nodes: Emission[];
  guests: Emission[];
  /** Valid until the next apply(): records are updated in place. */
  metrics: MetricSource[];
  kv: Emission[];
}

export class FleetTracker {
  readonly guests = new Map<number, GuestRecord>();
  readonly nodes = new Map<string, NodeRecord>();
  api: ApiRecord | undefined;
  private readonly announcedGuests = new Set<number>();
  /** Guests seen healthy since their current run began: past booting. */
  private readonly served = new Set<number>();
  private readonly announcedNodes = new Set<string>();
  private readonly kvWrittenAt = new Map<string, number>();

  constructor(
    private readonly fleet: Fleet,
    private readonly healthFailures: number,
    private readonly kvRefreshMs: number,
    /** A running guest not yet healthy since it started is booting, not failing, for this long (PVE uptime). */
    private readonly bootGraceMs = 0,
  ) {}

  private announceApi = false;

  /** Forget what was reported: the next round reports every guest, node and the API again, and
   *  rewrites their KV records (after a NATS reconnect, or a round whose publish failed). */
  resync(): void {
    this.announcedGuests.clear();
    this.announcedNodes.clear();
    this.kvWrittenAt.clear();
    this.announceApi = true;
  }

  /** What KV said before this process started: the "previous" side of the first events. */
  seed(guests: Iterable<GuestRecord>, nodes: Iterable<NodeRecord>, api?: ApiRecord): void {
    for (const g of guests) if (this.fleet.byVmid.has(g.vmid)) this.guests.set(g.vmid, g);
    for (const n of nodes) this.nodes.set(n.node, n);
    this.api = api;
  }

  /** `hooks`: hookscript phases reported since the last round, per vmid (named in the events' reasons).
   *  `scope` (replicated sensing): only the nodes this replica holds, and the guests on them, are
   *  judged and reported; the others are left as they were (their holder reports them). */
  apply(obs: Observation, probes: Map<number, ProbeResult>, now = Date.now(), hooks?: ReadonlyMap<number, string>, scope?: Scope): Emissions {
    const ts = new Date(now).toISOString();
    const out: Emissions = { ts, api: [], nodes: [], guests: [], metrics: [], kv: [] };
    if (!scope || scope.reportsApi) this.applyApi(obs, ts, out);
    if (!obs.api.ok) return out;
    for (const n of obs.nodes.values()) if (!n.stale && (!scope || scope.owns(n.node))) this.applyNode(n, ts, now, out);
    for (const g of obs.guests.values()) if (!scope || scope.owns(g.node)) this.applyGuest(g, probes.get(g.vmid), ts, now, out, hooks?.get(g.vmid));
    return out;
  }

  /** What the previous holder of some nodes last stored: the "previous" side of this replica's
   *  first reports about them (a change it missed while another replica held them is reported). */
  reseed(guests: Iterable<GuestRecord>, nodes: Iterable<NodeRecord>): void {
    for (const g of guests) {
      if (!this.fleet.byVmid.has(g.vmid)) continue;
      this.guests.set(g.vmid, g);
      this.kvWrittenAt.delete(kvKeys.guest(g.vmid));
    }
    for (const n of nodes) {
      this.nodes.set(n.node, n);
      this.kvWrittenAt.delete(kvKeys.node(n.node));
    }
  }

  private applyApi(obs: Observation, ts: string, out: Emissions): void {
    const available = obs.api.ok;
    const again = this.announceApi;
    this.announceApi = false;
    if (this.api && this.api.available === available && !again) return;
    const rec: ApiRecord = obs.api.ok ? { available: true, since: ts, reason: obs.api.reason } : { available: false, since: ts, code: obs.api.code, reason: obs.api.reason.slice(0, 2000) };
    const wasDown = this.api?.available === false || again;
    if (again && this.api && this.api.available === available) rec.since = this.api.since;
    this.api = rec;
    out.kv.push({ kind: 'kv', key: kvKeys.api(), value: rec });
    if (!available || wasDown) {
      out.api.push({ kind: 'event', subject: subjects.apiEvent(), type: available ? 'PveAvailable' : 'PveUnavailable', data: rec, key: 'api' });
    }
  }

  private applyNode(n: NodeObservation, ts: string, now: number, out: Emissions): void {
    const prev = this.nodes.get(n.node);
    const rec: NodeRecord = {
      node: n.node,
      status: n.status,
      reachable: n.reachable,
      fenced: prev?.fenced ?? false,
      updatedAt: ts,
    };
    if (!n.reachable) rec.unreachableSince = prev && !prev.reachable && prev.unreachableSince ? prev.unreachableSince : ts;
    if (n.resources) rec.resources = n.resources;
    this.nodes.set(n.node, rec);
    const ev = (type: string): Emission => ({
      kind: 'event',
      subject: subjects.nodeEvent(n.node),
      type,
      key: `node:${n.node}`,
      data: { node: n.node, status: n.status, previousStatus: prev?.status, reachable: n.reachable, reason: n.reason, resources: n.resources },
    });
    if (!this.announcedNodes.has(n.node)) {
      this.announcedNodes.add(n.node);
      out.nodes.push(ev('NodeDiscovered'));
    }
    const reachChanged = (prev?.reachable ?? true) !== n.reachable;
    if (reachChanged) out.nodes.push(ev(n.reachable ? 'NodeReachable' : 'NodeUnreachable'));
    else if (prev && prev.status !== n.status && n.status !== 'unknown') out.nodes.push(ev(n.status === 'offline' ? 'NodeDown' : 'NodeUp'));
    if (n.resources) out.metrics.push(rec);
    this.maybeKv(kvKeys.node(n.node), rec, reachChanged || prev?.status !== n.status, now, out);
  }

  /** Running since less than the boot grace and not healthy yet since then. A run that restarted
   *  between two rounds shows as uptime going backwards. */
  private booting(g: GuestObservation, prev: GuestRecord | undefined): boolean {
    const uptime = g.resources?.uptime;
    const before = prev?.state === 'running' ? prev.resources?.uptime : undefined;
    if (g.state !== 'running' || (uptime !== undefined && before !== undefined && uptime < before)) this.served.delete(g.vmid);
    return g.state === 'running' && g.reachable && !this.served.has(g.vmid) && uptime !== undefined && uptime * 1000 < this.bootGraceMs;
  }

  private applyGuest(g: GuestObservation, probe: ProbeResult | undefined, ts: string, now: number, out: Emissions, hook?: string): void {
    const spec = this.fleet.byVmid.get(g.vmid);
    if (!spec) return;
    const prev = this.guests.get(g.vmid);
    const wasRunning = prev?.state === 'running' && prev.reachable;
    let health: GuestRecord['health'] = 'unknown';
    let failures = 0;
    let probeReason: string | undefined;
    const booting = this.booting(g, prev);
    let stillBooting = false;
    if (g.state === 'running' && g.reachable) {
      if (!probe || probe.ok) {
        health = 'healthy';
        this.served.add(g.vmid);
      } else if (booting) {
        // services come up after PVE says running: failed probes now are the boot, not a fault
        stillBooting = true;
        probeReason = probe.reason;
      } else {
        failures = (wasRunning ? prev.probeFailures : 0) + 1;
        probeReason = probe.reason;
        health = failures >= this.healthFailures ? 'unhealthy' : wasRunning && prev.health !== 'unknown' ? prev.health : 'unknown';
      }
    }
    const certDaysLeft = g.state === 'running' ? probe?.certDaysLeft ?? prev?.certDaysLeft : undefined;
    const stateChanged = !prev || prev.state !== g.state || prev.reachable !== g.reachable || prev.node !== g.node;
    const healthChanged = prev?.health !== health;
    const certChanged = certDaysLeft !== undefined && Math.floor(certDaysLeft) !== Math.floor(prev?.certDaysLeft ?? Number.NaN);
    const changed = stateChanged || healthChanged || certChanged || prev?.probeFailures !== failures || (prev?.booting ?? false) !== stillBooting;

    // the event, built only when there is one (most guests, most rounds, have none)
    let type: string | undefined;
    let reason: string | undefined;
    if (!this.announcedGuests.has(g.vmid)) {
      this.announcedGuests.add(g.vmid);
      type = 'GuestDiscovered';
      reason = g.reason ?? probeReason;
    } else if (stateChanged) {
      type = 'GuestStateChanged';
      reason = g.reason ?? (prev && prev.node !== g.node ? `moved ${prev.node} → ${g.node}` : `${prev?.state ?? 'unknown'} → ${g.state}`);
      if (stillBooting) reason += ', booting';
      if (hook) reason += ` (hookscript ${hook})`;
    } else if (healthChanged) {
      type = 'GuestProbe';
      reason = health === 'unhealthy' ? `${failures} failed probes: ${probeReason ?? 'no reason'}` : health === 'healthy' ? 'probe ok' : probeReason;
    } else if (certChanged) {
      type = 'GuestResources';
    }
    if (type) {
      const data: GuestEvent = { vmid: g.vmid, node: g.node, name: spec.name, state: g.state, health };
      if (prev) {
        data.previousState = prev.state;
        data.previousHealth = prev.health;
      }
      // a copy of the figures there are: the observation's object is rewritten next round
      const resources = g.resources && definedResources(g.resources);
      if (resources) data.resources = resources;
      if (certDaysLeft !== undefined) data.certDaysLeft = certDaysLeft;
      if (stillBooting) data.booting = true;
      if (type !== 'GuestResources') data.reason = reason;
      if (data.reason) data.reason = data.reason.slice(0, 2000);
      out.guests.push({ kind: 'event', subject: subjects.guestEvent(g.node, g.vmid), type, data, key: `guest:${g.vmid}` });
    }

    // The record is updated in place, not rebuilt: one object per guest for the life of the
    // process (a new one each round outlived the round and was promoted: ~1 MB of old space a
    // round at 5,000 guests). Optional fields stay on it as undefined (JSON leaves them out).
    const rec: GuestRecord = prev ?? {
      vmid: g.vmid, name: spec.name, node: g.node, type: g.type, layer: spec.layer, state: g.state, health, probeFailures: failures, reachable: g.reachable,
      updatedAt: ts, stateSince: ts, lastProbeReason: undefined, booting: undefined, resources: undefined, certDaysLeft: undefined,
    };
    rec.name = spec.name;
    rec.node = g.node;
    rec.type = g.type;
    rec.layer = spec.layer;
    rec.state = g.state;
    rec.health = health;
    rec.probeFailures = failures;
    rec.reachable = g.reachable;
    rec.updatedAt = ts;
    if (stateChanged) rec.stateSince = ts;
    rec.lastProbeReason = probeReason ? probeReason.slice(0, 500) : undefined;
    rec.booting = stillBooting ? true : undefined;
    rec.resources = g.resources ? copyResources(g.resources, rec.resources) : undefined;
    rec.certDaysLeft = certDaysLeft;
    if (!prev) this.guests.set(g.vmid, rec);

    if (g.state === 'running' && rec.resources) out.metrics.push(rec);
    this.maybeKv(kvKeys.guest(g.vmid), rec, changed, now, out);
  }

  /** An unchanged record is rewritten once per refresh period, when its own phase in the period
   *  comes (a hash of the key): the records first written together at start were all rewritten in
   *  one round every period (5,000 acked puts at 5,000 guests, a latency spike every 10 s), now
   *  about a period's share each round. Never sooner than half a period after the last write, nor
   *  later than one and a half. */
  private maybeKv(key: string, value: GuestRecord | NodeRecord, changed: boolean, now: number, out: Emissions): void {
    const last = this.kvWrittenAt.get(key);
    if (!changed && last !== undefined) {
      const period = this.kvRefreshMs;
      const phase = keyPhase(key) * period;
      // due at the first of its phase's instants at least half a period after the last write
      if (Math.floor((now + phase) / period) <= Math.floor((last + period / 2 + phase) / period)) return;
    }
    this.kvWrittenAt.set(key, now);
    out.kv.push({ kind: 'kv', key, value });
  }
}

const RESOURCE_KEYS = ['cpu', 'mem', 'maxmem', 'disk', 'maxdisk', 'uptime'] as const;

/** `from` copied into `into` (reused when there is one). */
function copyResources(from: Resources, into: Resources = {}): Resources {
  for (const k of RESOURCE_KEYS) into[k] = from[k];
  return into;
}

/** The figures `r` has (undefined: none). */
function definedResources(r: Resources): Resources | undefined {
  let out: Resources | undefined;
  for (const k of RESOURCE_KEYS) if (r[k] !== undefined) (out ??= {})[k] = r[k];
  return out;
}

/** A key's place in [0, 1): FNV-1a of the key. */
function keyPhase(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h / 2 ** 32;
}
