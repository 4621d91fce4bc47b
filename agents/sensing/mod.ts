// The sensing agent: polls the PVE API (one listing per node per round), probes running guests'
// health, and publishes only what changed on fleet.events.*, samples on fleet.metrics.*, and the
// latest state in the fleet-state KV. A PVE outage is an event (PveUnavailable), never a crash.
// Optionally listens for Alertmanager webhooks and PVE hookscript reports (options.alertmanagerPort):
// a hook report starts a round at once (push), polling stays the fallback.
import { retry } from '../../core/mod.ts';
import { agentHandle, every, type AgentHandle, type AgentModule, type AgentProgress } from '../runtime/agent.ts';
import { startAlertReceiver, type AlertReceiver, type HookSink } from './alertmanager.ts';
import { PveObserver } from './observe.ts';
import { sensingOptions, type SensingAgentOptions } from './options.ts';
import { mapLimit, Prober } from './probe.ts';
import { loadRecords, publishEmissions } from './publish.ts';
import { GuestRecord, kvGet, kvKeys, NodeRecord, openLeaseStores } from '../../bus/mod.ts';
import { FleetTracker, type Scope } from './tracker.ts';
import { NodePartition } from './partition.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import type { Metrics } from '../runtime/metrics.ts';

export { parseAlertPayload } from './alert-payloads.ts';
export type { SensingAgentOptions } from './options.ts';

export interface SensingHandle extends AgentHandle {
  /** Bound port of the Alertmanager receiver, when it listens. */
  alertmanagerPort?: number;
  /** Completed polling rounds (tests wait on it instead of on the clock). */
  rounds(): number;
}

/** Each KV request of the node partition gives up after this (a look every 0.5 s, leases of 3 s). */
const PARTITION_KV_TIMEOUT_MS = 1000;

export const agent: AgentModule<SensingAgentOptions> = {
  name: 'sensing',
  async start(ctx): Promise<SensingHandle> {
    const opts = sensingOptions(ctx);
    const log = ctx.log;
    let receiver: AlertReceiver | undefined;
    // hookscript phases reported since the last round; the loop is bound once it exists
    const hints = new Map<number, string>();
    let pollNow = () => {};
    const hooks: HookSink | undefined = ctx.pve ? {
      token: opts.hookToken,
      onReport: (r) => {
        log.debug({ vmid: r.vmid, phase: r.phase, node: r.node }, 'hookscript report: polling now');
        hints.set(r.vmid, r.phase);
        pollNow();
      },
    } : undefined;
    if (opts.alertmanagerPort !== undefined) {
      receiver = await startAlertReceiver({ bus: ctx.bus, fleet: ctx.fleet, log, port: opts.alertmanagerPort, host: opts.alertmanagerHost, hooks });
    }
    let rounds = 0;
    if (!ctx.pve) {
      log.warn('no PVE API configured: sensing polls nothing (the Alertmanager receiver still listens when configured)');
      const h = agentHandle(async () => receiver?.close());
      return Object.assign(h, { alertmanagerPort: receiver?.port, rounds: () => rounds });
    }

    const pve = ctx.pve;
    const observer = new PveObserver(pve, ctx.fleet, opts.roundDeadlineMs, opts.pveUrl ? `PVE API at ${new URL(opts.pveUrl).host}` : undefined);
    const prober = new Prober(opts, ctx.fleet, log);
    const tracker = new FleetTracker(ctx.fleet, opts.healthFailures, opts.kvRefreshMs, opts.bootGraceMs);
    const seeded = await retry(() => loadRecords(ctx.bus), { attempts: 8, baseMs: 100, maxMs: 1000 }).catch((e: unknown) => {
      log.warn({ err: (e as Error).message }, 'could not read fleet-state KV; starting without previous state');
      return { guests: [], nodes: [], api: undefined };
    });
    tracker.seed(seeded.guests, seeded.nodes, seeded.api);
    // replicated: only the nodes whose leases this replica holds; a node gained from another
    // replica is judged against what that one last stored
    const gained = new Set<string>();
    const partition = opts.partitionHolder === undefined ? undefined : new NodePartition({
      // the lease stores, with 1 s requests: a look stuck 5 s on a store that does not answer (its
      // server SIGKILLed) delayed the takeover of a dead replica's nodes to 5.6–11.8 s (bench/scale)
      stores: await openLeaseStores(ctx.bus.nc, PARTITION_KV_TIMEOUT_MS),
      holder: opts.partitionHolder,
      nodes: ctx.fleet.nodes.map((n) => n.name),
      log,
      onGained: (nodes) => {
        for (const n of nodes) gained.add(n);
      },
    });
    await partition?.start();
    // only the records of the guests now listed on the gained nodes (and those last known there):
    // reading the whole bucket at each rebalance cost a 1,000-guest fleet a second per replica
    const reseed = async (seen: Iterable<{ vmid: number; node: string }>) => {
      if (!gained.size) return;
      const nodes = new Set(gained);
      gained.clear();
      const vmids = new Set<number>();
      for (const g of seen) if (nodes.has(g.node)) vmids.add(g.vmid);
      for (const g of tracker.guests.values()) if (nodes.has(g.node)) vmids.add(g.vmid);
      const kv = ctx.bus.kv.fleetState;
      try {
        const guests = (await mapLimit([...vmids], 64, (v) => kvGet(kv, kvKeys.guest(v), GuestRecord))).flatMap((r) => (r ? [r.value] : []));
        const nodeRecs = (await Promise.all([...nodes].map((n) => kvGet(kv, kvKeys.node(n), NodeRecord)))).flatMap((r) => (r ? [r.value] : []));
        tracker.reseed(guests, nodeRecs);
      } catch (e) {
        // KV not answering (a cluster electing a leader): read them again next round. Forgetting
        // them judged the gained nodes without their last state: a guest that crashed meanwhile
        // looked stopped from the start, and its crash was never reported (bench/scale, full run)
        for (const n of nodes) gained.add(n);
        throw e;
      }
    };

    let apiDown = false;
    const startedAt = Date.now();
    let lastRoundAt: number | undefined;
    let pveFailingSince: number | undefined;
    let pveError: string | undefined;
    let lastFullProbe = 0;
    const round = async () => {
      await prober.detectSimulator();
      const hooked = new Map(hints);
      hints.clear();
      const obs = await observer.observe();
      if (obs.api.ok) pveFailingSince = pveError = undefined;
      else {
        pveFailingSince ??= Date.now();
        pveError = `${obs.api.code}: ${obs.api.reason}`.slice(0, 500);
      }
      if (!obs.api.ok !== apiDown) {
        apiDown = !obs.api.ok;
        if (apiDown) log.warn({ code: !obs.api.ok ? obs.api.code : undefined }, 'PVE API unavailable; sensing keeps polling');
        else log.info('PVE API available again');
      }
      await reseed(obs.guests.values());
      const scope = partition ? { owns: (node: string) => partition.owns(node), reportsApi: partition.owned().length > 0 } : undefined;
      const running = obs.api.ok ? [...obs.guests.values()].filter((g) => g.reachable && g.state === 'running' && (!scope || scope.owns(g.node))).map((g) => g.vmid) : [];
      // a round a hook brought forward probes only the hooked guests (the others' probes are
      // younger than one interval); every other round probes everything
      const partial = hooked.size > 0 && Date.now() - lastFullProbe < opts.intervalMs;
      // the prober keeps every guest's last answer: a partial round updates the hooked ones
      const probes = partial ? await prober.probeSome(running.filter((v) => hooked.has(v))) : await prober.probeAll(running);
      if (!partial) lastFullProbe = Date.now();
      try {
        await publishEmissions(ctx.bus, tracker.apply(obs, probes, undefined, hooked, scope));
      } catch (e) {
        // not all of it was stored: the next round reports everything again
        tracker.resync();
        throw e;
      }
      ctx.metrics?.pveUp.set(obs.api.ok ? 1 : 0);
      if (ctx.metrics && obs.api.ok) countGuests(ctx.metrics, tracker, ctx.fleet, scope);
      rounds++;
      lastRoundAt = Date.now();
    };
    // what changed while NATS was away may never have been stored: report the whole fleet again
    const reconnects = ctx.bus.onReconnect(() => {
      log.info('NATS reconnected: the next round reports every guest again');
      tracker.resync();
    });
    const loop = every(opts.intervalMs, round, log);
    pollNow = () => loop.now();
    log.info({ intervalMs: opts.intervalMs, guests: ctx.fleet.guests.length, nodes: ctx.fleet.nodes.length }, 'sensing started');

    const h = agentHandle(async () => {
      await reconnects.stop();
      await loop.stop();
      await partition?.stop();
      await receiver?.close();
      await prober.close();
    });
    const progress = (now: number, stallMs: number): AgentProgress => {
      const quietFor = now - (lastRoundAt ?? startedAt);
      const detail = { intervalMs: opts.intervalMs, lastRoundAt: lastRoundAt && new Date(lastRoundAt).toISOString(), pveOk: pveFailingSince === undefined, pveFailingSince: pveFailingSince && new Date(pveFailingSince).toISOString(), pveError };
      const stuckAfter = Math.max(stallMs, 10 * opts.intervalMs);
      const stalled: AgentProgress['stalled'] = quietFor >= stuckAfter
        ? { kind: 'stuck', reason: `no polling round completed for ${Math.round(quietFor / 1000)} s` }
        : pveFailingSince !== undefined && now - pveFailingSince >= stallMs
          ? { kind: 'pve', reason: `sensing cannot reach the PVE API for ${Math.round((now - pveFailingSince) / 1000)} s: ${pveError ?? ''}` }
          : undefined;
      return { counters: { rounds }, detail, stalled };
    };
    return Object.assign(h, { alertmanagerPort: receiver?.port, rounds: () => rounds, progress });
  },
};

/** homeostat_guests{state,health,layer}: recounted each round from what sensing holds. */
function countGuests(m: Metrics, tracker: FleetTracker, fleet: Fleet, scope?: Scope): void {
  const counts = new Map<string, { state: string; health: string; layer: string; n: number }>();
  for (const g of tracker.guests.values()) {
    if (scope && !scope.owns(g.node)) continue; // another replica counts it
    const layer = String(fleet.byVmid.get(g.vmid)?.layer ?? 'unknown');
    const key = `${g.state}|${g.health}|${layer}`;
    const c = counts.get(key) ?? { state: g.state, health: g.health, layer, n: 0 };
    c.n++;
    counts.set(key, c);
  }
  m.guests.reset();
  for (const c of counts.values()) m.guests.set({ state: c.state, health: c.health, layer: c.layer }, c.n);
}
