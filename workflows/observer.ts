// What the fleet looks like right now, for the workflows' read-only checks: one poll loop shared by
// every waiter (a 1,000-guest boot must not mean 1,000 pollers). On the simulator one `/sim/fleet`
// call gives state, node and health of every guest; on real PVE `/cluster/resources` gives state
// and node, and health comes from the sensing agent's `guest.<vmid>` records in fleet-state.
import { GuestRecord, kvList, NodeRecord, type Bus } from '../bus/mod.ts';
import type { Fleet } from '../fleet/manifest.ts';
import type { PveApi } from '../fleet/pve-types.ts';
import { type AppLogger, sleep } from '../core/mod.ts';
import type { SimClient } from './sim-client.ts';

export interface GuestView {
  vmid: number;
  node: string;
  /** running | stopped | unknown (its node is down) */
  status: string;
  healthy: boolean;
}

export interface FleetView {
  at: number;
  guests: Map<number, GuestView>;
  nodes: Map<string, { online: boolean; fenced: boolean }>;
}

interface Waiter {
  test: (v: FleetView) => unknown;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export interface ObserverOptions {
  bus: Bus;
  fleet: Fleet;
  log: AppLogger;
  sim?: SimClient;
  pve?: PveApi;
  /** Poll interval while someone waits (default 50 ms on the simulator, 1 s on real PVE). */
  pollMs?: number;
}

export class FleetObserver {
  private readonly waiters = new Set<Waiter>();
  private loop?: Promise<void>;
  private inflight?: Promise<FleetView>;
  private stopped = false;
  /** Ends the poll loop's pause at once on stop (a long pollMs held `stop()` that long). */
  private readonly stopping = new AbortController();
  private readonly pollMs: number;
  private lastError = '';
  /** The poll interval now: pollMs, or longer after a slow read. */
  private interval: number;
  /** The newest view read (by `at`, when its read began). */
  private last?: FleetView;

  constructor(private readonly o: ObserverOptions) {
    this.pollMs = o.pollMs ?? (o.sim ? 50 : 1000);
    this.interval = this.pollMs;
  }

  get onSimulator(): boolean {
    return this.o.sim !== undefined;
  }

  /** A fresh view; concurrent callers share one read. */
  view(): Promise<FleetView> {
    this.inflight ??= this.read().then((v) => {
      if (!this.last || v.at >= this.last.at) this.last = v;
      return v;
    }).finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  /** The last view when it was read at most one poll interval ago (what a waiter polling now
   *  would see; the interval as stretched for a big fleet), else a fresh one. For the checks before each step of a big workflow (is the
   *  guest already running?): a read per step made a 2,000-guest boot read the whole fleet
   *  dozens of times a second. */
  recent(): Promise<FleetView> {
    if (this.last && Date.now() - this.last.at <= this.interval) return Promise.resolve(this.last);
    return this.view();
  }

  /** Resolves with the first truthy value of `test` over fresh views (polled while waiting). */
  waitFor<T>(test: (v: FleetView) => T | undefined | false, signal?: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const w: Waiter = {
        test,
        resolve: (v) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(v as T);
        },
        reject,
      };
      const onAbort = () => {
        this.waiters.delete(w);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(w);
      this.loop ??= this.run().finally(() => (this.loop = undefined));
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    for (const w of this.waiters) w.reject(new Error('observer stopped'));
    this.waiters.clear();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (this.waiters.size && !this.stopped) {
      const t0 = Date.now();
      try {
        const v = await this.view();
        this.lastError = '';
        for (const w of [...this.waiters]) {
          let hit: unknown;
          try {
            hit = w.test(v);
          } catch (e) {
            this.waiters.delete(w);
            w.reject(e);
            continue;
          }
          if (hit) {
            this.waiters.delete(w);
            w.resolve(hit);
          }
        }
      } catch (e) {
        const msg = (e as Error).message;
        if (msg !== this.lastError) this.o.log.warn({ err: msg }, 'fleet view failed; retrying');
        this.lastError = msg;
      }
      if (!this.waiters.size) break;
      // a slow read (big fleet) stretches the interval instead of stacking reads, and keeps
      // polling to about a fifth of the time: on the simulator a 5,000-guest read costs ~25 ms
      // of CPU, and a layered boot waits for health a few hundred ms per layer at most
      this.interval = Math.max(this.pollMs, 4 * (Date.now() - t0));
      await sleep(this.interval, this.stopping.signal).catch(() => undefined);
    }
  }

  private async read(): Promise<FleetView> {
    const { sim, pve, bus, fleet } = this.o;
    const at = Date.now();
    if (sim) {
      const v = await sim.fleet();
      return {
        at,
        guests: new Map(v.guests.map((g) => [g.vmid, g])), // the client made each a fresh GuestView
        nodes: new Map(v.nodes.map((n) => [n.name, { online: n.online, fenced: n.fenced }])),
      };
    }
    const [records, nodeRecords] = await Promise.all([
      kvList(bus.kv.fleetState, 'guest.', GuestRecord),
      kvList(bus.kv.fleetState, 'node.', NodeRecord),
    ]);
    const health = new Map([...records.values()].map((r) => [r.vmid, r]));
    const guests = new Map<number, GuestView>();
    const nodes = new Map<string, { online: boolean; fenced: boolean }>();
    if (pve) {
      const [list, status] = await Promise.all([pve.clusterGuests(), pve.clusterStatus()]);
      for (const g of list) {
        const h = health.get(g.vmid);
        guests.set(g.vmid, { vmid: g.vmid, node: g.node, status: g.status, healthy: g.status === 'running' && h?.health === 'healthy' && h.state === 'running' });
      }
      for (const s of status) if (s.type === 'node') nodes.set(s.name, { online: s.online === true, fenced: false });
    } else {
      // no PVE API configured: what sensing last wrote is all there is
      for (const r of health.values()) guests.set(r.vmid, { vmid: r.vmid, node: r.node, status: r.state, healthy: r.state === 'running' && r.health === 'healthy' });
    }
    for (const r of nodeRecords.values()) {
      const n = nodes.get(r.node);
      if (n) n.fenced = r.fenced;
      else if (!pve) nodes.set(r.node, { online: r.status === 'online' && r.reachable, fenced: r.fenced });
    }
    for (const g of fleet.guests) if (!guests.has(g.vmid)) guests.set(g.vmid, { vmid: g.vmid, node: g.node, status: 'unknown', healthy: false });
    return { at, guests, nodes };
  }
}
