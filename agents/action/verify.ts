// After the PVE task: is the guest where the action meant it to be? Running and healthy after a
// start/reboot, stopped after a stop/shutdown, on the target node after a migrate. Health comes
// from the guest's health URL (manifest), else the simulator's /sim/health, else sensing's fresh
// record in fleet-state, else PVE's status alone.
//
// Verifying a start waits for the guest's whole boot, and a big boot has a thousand guests doing
// so at once (bench/boot.ts, 5,000 guests): one HTTP probe per guest per look went unanswered
// within the probe timeout for a minute. So the looks are shared: on the simulator, the guests
// looked at within one round are asked about in one `GET /sim/health?vmids=…` (per-guest outcomes),
// one round in flight at a time; health URLs and sensing's records are read per guest, at most
// PROBES_AT_ONCE at a time.
import { Agent, fetch } from 'undici';
import { HomeostatError, isHomeostatError, sleep } from '../../core/mod.ts';
import { GuestRecord, kvGet, kvKeys, type Action, type Bus } from '../../bus/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import type { GuestAddress, PveApi } from '../../fleet/pve-types.ts';

export interface VerifierOptions {
  pveUrl?: string;
  tokenId?: string;
  tokenSecret?: string;
  caPem?: string;
  insecure?: boolean;
  probeTimeoutMs: number;
}

type Want = 'running' | 'stopped' | 'exists';

/** Looks at the guest every 250 ms at first, then less often up to every 750 ms: a guest that
 *  takes 8 s to boot is looked at 14 times, not 32 (a 5,000-guest boot has hundreds verifying at
 *  once; their looks were the biggest part of the action agent's CPU, bench/boot.ts). */
const POLL_FIRST_MS = 250;
const POLL_MAX_MS = 750;
/** Per-guest probes (health URLs, sensing's records) in flight at once, over every verifying action. */
const PROBES_AT_ONCE = 64;
/** Gap between the starts of two shared rounds of looks on the simulator. */
const ROUND_GAP_MS = 100;
/** Vmids per `GET /sim/health?vmids=…` (the simulator takes up to 500). */
const BATCH_MAX = 400;

interface Health { ok: boolean; reason?: string }

/** Calls of `fn` at most `limit` at a time; the others wait in line. */
function limited(limit: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const line: (() => void)[] = [];
  return async (fn) => {
    if (active >= limit) await new Promise<void>((r) => line.push(r));
    else active++;
    try {
      return await fn();
    } finally {
      const next = line.shift();
      if (next) next();
      else active--;
    }
  };
}

/** Guests watched until healthy, all looked at together: each round asks `ask(vmids)` once for
 *  every guest watched (several guests per call), one round in flight at a time, a round every
 *  `gapMs` while anyone watches. A watcher costs an entry, not a timer or a call of its own: a
 *  loop per guest (a timer, an abort listener and a look every 200-750 ms) was ~4,500 looks/s and a
 *  good part of the action agent's CPU with ~900 guests booting at once (bench/boot.ts). */
export class SharedLooks {
  private readonly watchers = new Map<number, Set<Watcher>>();
  private running = false;
  private timer?: NodeJS.Timeout;
  private lastAt = 0;
  /** Rounds run (for tests and the bench). */
  rounds = 0;

  constructor(private readonly ask: (vmids: number[]) => Promise<Map<number, Health>>, private readonly gapMs = ROUND_GAP_MS) {}

  /** Resolves with the first healthy answer for `vmid`, or with the last answer (not healthy) once
   *  `waitMs` has passed; rejects when `signal` aborts. */
  until(vmid: number, waitMs: number, signal: AbortSignal): Promise<Health> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      const w: Watcher = { last: { ok: false, reason: 'not looked at yet' }, done: () => undefined };
      const set = this.watchers.get(vmid) ?? new Set<Watcher>();
      this.watchers.set(vmid, set);
      const end = (h?: Health, err?: unknown) => {
        clearTimeout(timeout);
        signal.removeEventListener('abort', onAbort);
        set.delete(w);
        if (!set.size && this.watchers.get(vmid) === set) this.watchers.delete(vmid);
        if (err !== undefined) reject(err);
        else resolve(h!);
      };
      const onAbort = () => end(undefined, signal.reason);
      const timeout = setTimeout(() => end(w.last), Math.max(0, waitMs));
      w.done = (h) => end(h);
      signal.addEventListener('abort', onAbort, { once: true });
      set.add(w);
      this.kick();
    });
  }

  private kick(): void {
    if (this.running || this.timer || !this.watchers.size) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.round();
    }, Math.max(0, this.lastAt + this.gapMs - Date.now()));
  }

  private async round(): Promise<void> {
    if (!this.watchers.size) return; // every watch ended while the round waited for its turn
    this.running = true;
    this.lastAt = Date.now();
    this.rounds++;
    const vmids = [...this.watchers.keys()];
    let answers: Map<number, Health> | undefined;
    let why = 'no answer';
    try {
      answers = await this.ask(vmids);
    } catch (e) {
      why = (e as Error).message;
    }
    this.running = false;
    for (const vmid of vmids) {
      const h = answers?.get(vmid) ?? { ok: false, reason: why };
      for (const w of [...(this.watchers.get(vmid) ?? [])]) {
        w.last = h;
        if (h.ok) w.done(h);
      }
    }
    this.kick();
  }
}

interface Watcher { last: Health; done: (h: Health) => void }

export function expectedState(a: Action): Want {
  if (a.verb === 'stop' || a.verb === 'shutdown') return 'stopped';
  if (a.verb === 'start' || a.verb === 'reboot') return 'running';
  return 'exists';
}

export class Verifier {
  private simulator: boolean | undefined;
  private readonly dispatcher: Agent;
  private readonly probe = limited(PROBES_AT_ONCE);
  /** The simulator answers `GET /sim/health?vmids=…` (an older one does not: one probe a guest). */
  private batch = true;
  readonly simLooks = new SharedLooks((vmids) => this.simHealth(vmids));

  constructor(private readonly pve: PveApi, private readonly bus: Bus, private readonly fleet: Fleet, private readonly opts: VerifierOptions) {
    const tls = opts.caPem ? { ca: opts.caPem } : opts.insecure ? { rejectUnauthorized: false } : {};
    this.dispatcher = new Agent({ connect: tls, keepAliveTimeout: 10_000 });
    if (!opts.pveUrl) this.simulator = false;
  }

  /** Resolves when the guest is as the action wants; HOMEOSTAT_ERR_TIMEOUT after `timeoutMs`. */
  async verify(a: Action, g: GuestAddress, since: number, timeoutMs: number, signal: AbortSignal): Promise<void> {
    const want = expectedState(a);
    const deadline = Date.now() + timeoutMs;
    let why = 'not checked yet';
    let pause = POLL_FIRST_MS;
    const timedOut = (why: string) =>
      new HomeostatError('HOMEOSTAT_ERR_TIMEOUT', `guest ${g.vmid} not ${want === 'running' ? 'running and healthy' : want} within ${timeoutMs} ms after ${a.verb} (${why.slice(0, 300)})`);
    if (want === 'running') await this.knowSimulator();
    for (;;) {
      signal.throwIfAborted();
      try {
        if (want === 'running') {
          // the health check first: while the guest boots it alone says "not yet", one call per
          // look instead of two (a 5,000-guest boot has hundreds of starts verifying at once);
          // healthy counts only once PVE also reports it running
          // on the simulator: watched with every other guest booting, until healthy (or the deadline)
          const shared = this.shared(g.vmid);
          const h = shared ? await this.simLooks.until(g.vmid, deadline - Date.now(), signal) : await this.health(g.vmid, since);
          if (!h.ok) why = `not healthy: ${h.reason}`;
          if (!h.ok && shared) throw timedOut(why); // until() answers "not healthy" only at the deadline
          else {
            const s = await this.pve.guestStatus(g);
            if (s.status === want) return;
            why = `healthy, but PVE reports ${s.status}`;
          }
        } else {
          const s = await this.pve.guestStatus(g);
          if (want === 'exists' || s.status === want) return;
          why = `PVE reports ${s.status}`;
        }
      } catch (e) {
        if (signal.aborted || isHomeostatError(e, 'HOMEOSTAT_ERR_TIMEOUT')) throw e;
        why = (e as Error).message;
      }
      if (Date.now() > deadline) throw timedOut(why);
      await sleep(pause, signal);
      pause = Math.min(POLL_MAX_MS, Math.round(pause * 1.25));
    }
  }

  private headers(): Record<string, string> {
    return this.opts.tokenId && this.opts.tokenSecret ? { authorization: `PVEAPIToken=${this.opts.tokenId}=${this.opts.tokenSecret}` } : {};
  }

  private async isSimulator(): Promise<boolean> {
    if (this.simulator !== undefined) return this.simulator;
    try {
      const res = await fetch(new URL('/sim/fleet', this.opts.pveUrl), { headers: this.headers(), dispatcher: this.dispatcher, signal: AbortSignal.timeout(2000) });
      await res.body?.cancel().catch(() => undefined);
      if (res.status < 500) this.simulator = res.status === 200;
      return res.status === 200;
    } catch {
      return false;
    }
  }

  /** Looked at in the shared rounds (the simulator, no health URL of its own). */
  private shared(vmid: number): boolean {
    return this.simulator === true && this.batch && !this.fleet.byVmid.get(vmid)?.health;
  }

  /** Learn whether PVE is the simulator before the first look (the shared looks need to know). */
  private async knowSimulator(): Promise<void> {
    if (this.simulator === undefined) await this.isSimulator();
  }

  private async health(vmid: number, since: number): Promise<Health> {
    const spec = this.fleet.byVmid.get(vmid);
    if (spec?.health) return this.probe(() => this.fetchHealth(spec.health!, {}));
    if (await this.isSimulator()) {
      return this.probe(() => this.fetchHealth(new URL(`/sim/health/${vmid}`, this.opts.pveUrl).href, this.headers()));
    }
    // no probe target of our own: sensing's record counts when it was written after the task
    const rec = (await this.probe(() => kvGet(this.bus.kv.fleetState, kvKeys.guest(vmid), GuestRecord)))?.value;
    if (!rec || Date.parse(rec.updatedAt) < since) return { ok: true };
    return rec.health === 'unhealthy' ? { ok: false, reason: rec.lastProbeReason ?? 'sensing reports unhealthy' } : { ok: true };
  }

  private async fetchHealth(url: string, headers: Record<string, string>): Promise<Health> {
    try {
      const res = await fetch(url, { headers, dispatcher: this.dispatcher, signal: AbortSignal.timeout(this.opts.probeTimeoutMs) });
      const body = (await res.text()).slice(0, 200);
      return res.status >= 200 && res.status < 300 ? { ok: true } : { ok: false, reason: `HTTP ${res.status} ${body.replace(/\s+/g, ' ')}` };
    } catch (e) {
      return { ok: false, reason: (e as Error).name === 'TimeoutError' ? `no answer within ${this.opts.probeTimeoutMs} ms` : (e as Error).message };
    }
  }

  /** One shared round on the simulator: every guest looked at, BATCH_MAX to a call. */
  private async simHealth(vmids: number[]): Promise<Map<number, Health>> {
    const out = new Map<number, Health>();
    const chunks: number[][] = [];
    for (let i = 0; i < vmids.length; i += BATCH_MAX) chunks.push(vmids.slice(i, i + BATCH_MAX));
    await Promise.all(chunks.map(async (chunk) => {
      const url = new URL('/sim/health', this.opts.pveUrl);
      url.searchParams.set('vmids', chunk.join(','));
      let rows: { vmid: number; status: string; reason?: string }[];
      try {
        const res = await fetch(url, { headers: this.headers(), dispatcher: this.dispatcher, signal: AbortSignal.timeout(this.opts.probeTimeoutMs) });
        if (res.status === 404 || res.status === 405 || res.status === 400) {
          await res.body?.cancel().catch(() => undefined);
          this.batch = false; // an older simulator: one probe a guest from now on
          await Promise.all(chunk.map(async (v) => out.set(v, await this.health(v, 0))));
          return;
        }
        const body = await res.text();
        if (res.status !== 200) throw new Error(`HTTP ${res.status} ${body.slice(0, 200).replace(/\s+/g, ' ')}`);
        rows = (JSON.parse(body) as { guests: typeof rows }).guests;
      } catch (e) {
        const reason = (e as Error).name === 'TimeoutError' ? `no answer within ${this.opts.probeTimeoutMs} ms` : (e as Error).message;
        for (const v of chunk) out.set(v, { ok: false, reason });
        return;
      }
      for (const r of rows) out.set(r.vmid, r.status === 'ok' ? { ok: true } : { ok: false, reason: `HTTP 503 ${r.status}${r.reason ? `: ${r.reason}` : ''}` });
    }));
    return out;
  }

  async close(): Promise<void> {
    await this.dispatcher.close().catch(() => undefined);
  }
}
