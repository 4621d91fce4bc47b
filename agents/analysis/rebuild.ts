// Memory after a restart comes from KV: the latest guest/node/api records sensing wrote, the
// desired states, and the open incidents of this fleet. Alerts that those incidents imply are
// remembered as firing so they are not announced twice.
import { ApiRecord, DesiredState, GuestRecord, IncidentRecord, kvGet, kvKeys, kvList, NodeRecord, type Bus, type Incident } from '../../bus/mod.ts';
import type { Logger } from '../../core/mod.ts';
import type { FleetStateSnapshot } from './model.ts';

export type { FleetStateSnapshot } from './model.ts';
import { RESOURCE_ALERTS } from './alerts.ts';
import type { Analyzer, Output } from './analyzer.ts';

export const DESIRED_PREFIX = 'desired.';

export function vmidOfDesiredKey(key: string): number | undefined {
  const v = Number(key.slice(DESIRED_PREFIX.length));
  return key.startsWith(DESIRED_PREFIX) && Number.isInteger(v) ? v : undefined;
}

function belongs(a: Analyzer, inc: Incident): boolean {
  const rc = inc.rootCause;
  const vmidOk = rc.vmid !== undefined && a.view.has(rc.vmid);
  const nodeOk = rc.node !== undefined && a.view.nodes.has(rc.node);
  switch (inc.kind) {
    case 'guest':
      return vmidOk;
    case 'node':
      return nodeOk;
    case 'api':
      return rc.name === a.fleet.name;
    case 'self':
      return rc.name?.startsWith('homeostat/') ?? false;
    case 'resource':
      return rc.vmid !== undefined ? vmidOk : nodeOk;
    case 'external':
      return vmidOk || nodeOk || rc.name === a.fleet.name;
    default:
      return false; // flapping incidents belong to decision
  }
}

export async function readFleetState(bus: Bus): Promise<FleetStateSnapshot> {
  const kv = bus.kv.fleetState;
  const at = Date.now();
  const [guests, nodes, api, desired] = await Promise.all([
    kvList(kv, 'guest.', GuestRecord),
    kvList(kv, 'node.', NodeRecord),
    kvGet(kv, kvKeys.api(), ApiRecord),
    kvList(kv, DESIRED_PREFIX, DesiredState),
  ]);
  return { at, guests, nodes, api: api?.value, desired };
}

/** A standby's copy of fleet-state, read every `everyMs` while it waits for the lease: taking
 *  over, it reads only the incidents (and the records of the guests and nodes they name) instead
 *  of the whole fleet, which right after a cluster lost a server took 13–80 s (bench/scale). */
export class FleetStateWarmer {
  private latest?: FleetStateSnapshot;
  private timer?: NodeJS.Timeout;
  private on = false;

  constructor(private readonly bus: Bus, private readonly log: Logger, private readonly everyMs = 10_000, private readonly maxAgeMs = 30_000) {}

  start(): void {
    if (this.on) return;
    this.on = true;
    const round = () => {
      if (!this.on) return;
      readFleetState(this.bus).then((s) => {
        if (this.on) this.latest = s;
      }, (e: unknown) => this.log.debug({ err: (e as Error).message }, 'standby: could not read fleet-state; next round'))
        .finally(() => {
          if (this.on) this.timer = setTimeout(round, this.everyMs);
        });
    };
    round();
  }

  stop(): void {
    this.on = false;
    clearTimeout(this.timer);
  }

  /** The latest copy, if recent enough to start from. */
  take(): FleetStateSnapshot | undefined {
    return this.latest && Date.now() - this.latest.at <= this.maxAgeMs ? this.latest : undefined;
  }
}

/** `warm`: a standby's recent copy of fleet-state, used instead of reading it all again; the
 *  desired states and the records of what the open incidents name are read afresh, so that an
 *  incident opened since the copy is not judged on a state older than it. Whatever else changed
 *  since is applied by the reconcile with KV the agent runs right after. */
export async function rebuild(bus: Bus, a: Analyzer, warm?: FleetStateSnapshot): Promise<{ guests: number; incidents: number; warm: boolean }> {
  // the desired states are read afresh even then: few, and a maintenance set since the copy must hold
  const [fs, incidents, freshDesired] = await Promise.all([
    warm ?? readFleetState(bus),
    kvList(bus.kv.incidents, '', IncidentRecord),
    warm ? kvList(bus.kv.fleetState, DESIRED_PREFIX, DesiredState) : undefined,
  ]);
  const { api } = fs;
  const desired = freshDesired ?? fs.desired;
  let { guests, nodes } = fs;
  if (warm) {
    guests = new Map(guests);
    nodes = new Map(nodes);
    const vmids = new Set<number>();
    const nodeNames = new Set<string>();
    for (const inc of incidents.values()) {
      if (inc.status !== 'open') continue;
      if (inc.rootCause.vmid !== undefined) vmids.add(inc.rootCause.vmid);
      if (inc.rootCause.node !== undefined) nodeNames.add(inc.rootCause.node);
      for (const s of inc.symptoms) vmids.add(s.vmid);
    }
    const kv = bus.kv.fleetState;
    await Promise.all([
      ...[...vmids].map(async (v) => {
        const r = await kvGet(kv, kvKeys.guest(v), GuestRecord);
        if (r) guests.set(kvKeys.guest(v), r.value);
      }),
      ...[...nodeNames].map(async (n) => {
        const r = await kvGet(kv, kvKeys.node(n), NodeRecord);
        if (r) nodes.set(kvKeys.node(n), r.value);
      }),
    ]);
  }
  let known = 0;
  for (const rec of guests.values()) {
    const v = a.view.guests.get(rec.vmid);
    if (!v) continue;
    known++;
    v.node = rec.node;
    v.state = rec.reachable ? rec.state : 'unknown';
    v.health = rec.health;
    v.ts = rec.updatedAt;
    if (rec.certDaysLeft !== undefined) v.certDaysLeft = rec.certDaysLeft;
    if (rec.state === 'running' && rec.health === 'unhealthy') v.unhealthySince = Date.parse(rec.stateSince) || Date.now();
  }
  for (const rec of nodes.values()) {
    const n = a.view.nodes.get(rec.node);
    if (!n) continue;
    n.status = rec.status;
    n.reachable = rec.reachable;
    n.ts = rec.updatedAt;
    if (a.view.nodeDown(rec.node)) n.downSince = (rec.unreachableSince && Date.parse(rec.unreachableSince)) || Date.now();
  }
  a.view.apiAvailable = api?.available ?? true;
  for (const [key, d] of desired) {
    const vmid = vmidOfDesiredKey(key);
    if (vmid !== undefined && a.view.has(vmid)) a.view.desired.set(vmid, d);
  }
  let adopted = 0;
  for (const inc of incidents.values()) {
    if (inc.status !== 'open' || !belongs(a, inc)) continue;
    a.book.adopt(inc);
    adopted++;
    const key = inc.timeline[0]?.ref?.startsWith('alert:') ? inc.timeline[0].ref.slice(6) : undefined;
    const name = key?.split(':')[0];
    if (key && name && (RESOURCE_ALERTS.has(name) || name === 'PveUnavailable')) {
      a.alerts.remember(name as 'DiskFull', key.slice(name.length + 1), { vmid: inc.rootCause.vmid, node: inc.rootCause.node, summary: inc.title }, inc.openedAt);
    }
    if (inc.kind === 'node' && inc.rootCause.node && inc.timeline.some((t) => t.what === 'NodeDown alert fired')) {
      a.alerts.remember('NodeDown', inc.rootCause.node, { node: inc.rootCause.node, summary: inc.title }, inc.openedAt);
    }
  }
  return { guests: known, incidents: adopted, warm: warm !== undefined };
}

/** Level-triggered check, periodic and after every reconnect: a fleet-state record newer than
 *  what the analyzer holds, and saying something else, is applied as its event would have been
 *  (an event lost in an outage must not leave a crash unseen or an incident open). */
export async function reconcileWithKv(bus: Bus, a: Analyzer): Promise<Output[]> {
  const kv = bus.kv.fleetState;
  const [guests, nodes] = await Promise.all([kvList(kv, 'guest.', GuestRecord), kvList(kv, 'node.', NodeRecord)]);
  const out: Output[] = [];
  const reason = 'fleet-state record (reconciled)';
  for (const rec of nodes.values()) {
    const n = a.view.nodes.get(rec.node);
    if (!n || rec.updatedAt <= n.ts || (n.status === rec.status && n.reachable === rec.reachable)) continue;
    const env = bus.envelope(rec.reachable ? 'NodeReachable' : 'NodeUnreachable', { node: rec.node, status: rec.status, reachable: rec.reachable, reason }, { ts: rec.updatedAt });
    out.push(...a.onNodeEvent(env));
  }
  for (const rec of guests.values()) {
    const g = a.view.guests.get(rec.vmid);
    const state = rec.reachable ? rec.state : 'unknown';
    if (!g || rec.updatedAt <= g.ts || (g.state === state && g.health === rec.health && g.node === rec.node)) continue;
    const env = bus.envelope('GuestStateChanged', { vmid: rec.vmid, node: rec.node, name: rec.name, state, health: rec.health, reason }, { ts: rec.updatedAt });
    out.push(...a.onGuestEvent(env));
  }
  return out;
}
