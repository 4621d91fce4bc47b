// Health probes: HTTP GET of each running guest's health URL (the manifest's `health`, or the
// simulator's /sim/health/{vmid} when the PVE endpoint is the simulator), concurrency-limited,
// each with its own timeout. A probe never throws: it answers ok or not, with a reason.
import { Agent, request, type Dispatcher } from 'undici';
import { type Logger } from '../../core/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import type { SensingOptions } from './options.ts';

export interface ProbeResult {
  ok: boolean;
  reason?: string;
  certDaysLeft?: number;
}

const BODY_LIMIT = 16 * 1024;

/** Run `fn` over `items` with at most `limit` in flight. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

interface Target {
  url: string;
  sim: boolean;
  /** What undici's dispatch takes, built once per guest: a probe allocates no options of its own. */
  dispatch: Dispatcher.DispatchOptions;
}

export class Prober {
  /** undefined until the PVE endpoint has answered /sim/fleet one way or the other. */
  simulator: boolean | undefined;
  private readonly simDispatcher: Agent;
  private readonly guestDispatcher: Agent;
  private readonly auth: Record<string, string>;
  /** Probe targets are built once per guest (thousands of probes per round). */
  private readonly targets = new Map<number, Target | null>();
  /** Each guest's latest answer, kept from round to round and returned by every probe call (valid
   *  until the next): an unchanged answer stays the same object, and neither the map nor its
   *  entries are new each round (a 5,000-entry map is a large object, kept until a major GC). */
  private readonly results = new Map<number, ProbeResult>();
  /** Which call last probed each guest. */
  private readonly probedIn = new Map<number, number>();
  private calls = 0;

  constructor(
    private readonly opts: SensingOptions,
    private readonly fleet: Fleet,
    private readonly log: Logger,
  ) {
    const tls = opts.caPem ? { ca: opts.caPem } : opts.insecure ? { rejectUnauthorized: false } : {};
    this.simDispatcher = new Agent({ connect: tls, keepAliveTimeout: 10_000, connections: opts.probeConcurrency });
    this.guestDispatcher = new Agent({ keepAliveTimeout: 10_000 });
    if (!opts.pveUrl) this.simulator = false;
    this.auth = opts.tokenId && opts.tokenSecret ? { authorization: `PVEAPIToken=${opts.tokenId}=${opts.tokenSecret}` } : {};
  }

  private authHeaders(): Record<string, string> {
    return this.auth;
  }

  /** Asks once whether the PVE endpoint is the simulator; retried on later rounds only while the answer is unclear. */
  async detectSimulator(): Promise<void> {
    if (this.simulator !== undefined || !this.opts.pveUrl) return;
    try {
      const res = await request(new URL('/sim/fleet', this.opts.pveUrl), {
        method: 'GET',
        headers: this.authHeaders(),
        dispatcher: this.simDispatcher,
        headersTimeout: Math.max(this.opts.probeTimeoutMs, 2000),
      });
      await res.body.dump();
      const status = res.statusCode;
      if (status >= 500) return; // the API may be failing right now: ask again next round
      this.simulator = status === 200;
      if (status === 401) this.log.warn('the PVE endpoint refused the token on /sim/fleet; probing manifest health URLs only');
      this.log.info({ simulator: this.simulator }, this.simulator ? 'PVE endpoint is the simulator: probing /sim/health/{vmid}' : 'PVE endpoint is not the simulator');
    } catch (e) {
      this.log.debug({ err: (e as Error).message }, 'simulator detection failed; will retry');
    }
  }

  /** The URL probed for a guest, or undefined when there is nothing to probe (PVE status alone counts). */
  target(vmid: number): { url: string; sim: boolean } | undefined {
    return this.targetOf(vmid);
  }

  private targetOf(vmid: number): Target | undefined {
    if (this.simulator === undefined) {
      const health = this.fleet.byVmid.get(vmid)?.health;
      return health ? this.makeTarget(health, false) : undefined;
    }
    let t = this.targets.get(vmid);
    if (t === undefined) {
      const spec = this.fleet.byVmid.get(vmid);
      t = spec?.health ? this.makeTarget(spec.health, false) : this.simulator && this.opts.pveUrl ? this.makeTarget(new URL(`/sim/health/${vmid}`, this.opts.pveUrl).href, true) : null;
      this.targets.set(vmid, t);
    }
    return t ?? undefined;
  }

  private makeTarget(url: string, sim: boolean): Target {
    const u = new URL(url);
    return {
      url,
      sim,
      dispatch: {
        origin: u.origin,
        path: `${u.pathname}${u.search}`,
        method: 'GET',
        headers: sim ? this.authHeaders() : {},
        // the lanes keep the time themselves (ProbeLane.arm): 0 turns undici's timers off
        headersTimeout: 0,
        bodyTimeout: 0,
      },
    };
  }

  /** Probes every guest given (those with something to probe), `probeConcurrency` at once; the
   *  results of guests not among them are dropped. One reusable handler per lane drives undici's
   *  dispatch directly: undici's request() built a body stream, an async iterator, promises and a
   *  handler per probe, and those lived long enough to be promoted: ~1 KB of old space per probe,
   *  ~5 MB a round at 5,000 guests. */
  async probeAll(vmids: readonly number[]): Promise<Map<number, ProbeResult>> {
    const { call, probed } = await this.run(vmids);
    if (this.results.size > probed) {
      for (const v of this.results.keys()) {
        if (this.probedIn.get(v) !== call) {
          this.results.delete(v);
          this.probedIn.delete(v);
        }
      }
    }
    return this.results;
  }

  /** Probes the guests given; the others keep their last results (a round a hook brought forward). */
  async probeSome(vmids: readonly number[]): Promise<Map<number, ProbeResult>> {
    await this.run(vmids);
    return this.results;
  }

  private async run(vmids: readonly number[]): Promise<{ call: number; probed: number }> {
    const call = ++this.calls;
    const withTarget: Target[] = [];
    const ids: number[] = [];
    for (const v of vmids) {
      const t = this.targetOf(v);
      if (t && this.probedIn.get(v) !== call) {
        this.probedIn.set(v, call);
        withTarget.push(t);
        ids.push(v);
      }
    }
    if (ids.length) {
      await new Promise<void>((resolve) => {
        const round = new ProbeRound(ids, withTarget, (v, r) => this.record(v, r), (v) => this.lastResult(v), resolve);
        for (let i = 0; i < Math.min(this.opts.probeConcurrency, ids.length); i++) new ProbeLane(this, round).next();
      });
    }
    return { call, probed: ids.length };
  }

  /** One guest's probe (the same path as probeAll's). */
  async probe(vmid: number): Promise<ProbeResult> {
    return (await this.probeSome([vmid])).get(vmid) ?? { ok: true };
  }

  /** Dispatcher for a target (lanes call it). */
  dispatcherFor(t: Target): Dispatcher {
    return t.sim ? this.simDispatcher : this.guestDispatcher;
  }

  get timeoutMs(): number {
    return this.opts.probeTimeoutMs;
  }

  private record(vmid: number, r: ProbeResult): void {
    const prev = this.results.get(vmid);
    if (!prev || prev.ok !== r.ok || prev.reason !== r.reason || prev.certDaysLeft !== r.certDaysLeft) this.results.set(vmid, r);
  }

  /** A guest's last answer (lanes compare with it). */
  lastResult(vmid: number): ProbeResult | undefined {
    return this.results.get(vmid);
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.simDispatcher.close(), this.guestDispatcher.close()]);
  }
}

/** One probeAll: which guest is next, and what each answered. */
class ProbeRound {
  private cursor = 0;
  private running = 0;

  constructor(
    readonly ids: readonly number[],
    readonly targets: readonly Target[],
    private readonly done: (vmid: number, r: ProbeResult) => void,
    /** A guest's last answer. */
    readonly last: (vmid: number) => ProbeResult | undefined,
    private readonly resolve: () => void,
  ) {}

  /** The index of the next guest to probe, or -1 (and the round resolves once none is running). */
  take(): number {
    if (this.cursor < this.ids.length) {
      this.running++;
      return this.cursor++;
    }
    if (this.running === 0) this.resolve();
    return -1;
  }

  record(vmid: number, r: ProbeResult): void {
    this.done(vmid, r);
    this.running--;
  }
}

/** One of probeAll's concurrent lanes: undici's handler for one probe at a time, reused for the
 *  next probe when one ends (undici calls exactly one of onComplete/onError per request, as its
 *  own redirect handler relies on when it dispatches itself again). */
class ProbeLane implements Dispatcher.DispatchHandler {
  private vmid = 0;
  private status = 0;
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private capped = false;
  private abort: ((err?: Error) => void) | undefined;
  /** A probe that ends inside dispatch (an error undici raises at once) is taken up after dispatch
   *  returns, in next()'s loop: no recursion through thousands of failing probes. */
  private dispatching = false;
  private endedInDispatch = false;
  /** The probe's deadline: headers, then each piece of the body, within probeTimeoutMs of the
   *  last sign of life (what undici's header and body timeouts did), on one timer per lane that
   *  each probe refreshes. undici made a timer object per probe (header and keep-alive timers
   *  alternate on a connection), listed ~0.5 s and so promoted: ~0.4 MB of old space a round at
   *  5,000 guests. Until the request is on a socket, undici's connect timeout holds, as before. */
  private timer: NodeJS.Timeout | undefined;
  private armed = false;
  private timedOut = false;

  constructor(
    private readonly prober: Prober,
    private readonly round: ProbeRound,
  ) {}

  /** Probe guests until none is left. */
  next(): void {
    for (let i = this.round.take(); i >= 0; i = this.round.take()) {
      const t = this.round.targets[i];
      this.vmid = this.round.ids[i];
      this.status = 0;
      this.chunks.length = 0;
      this.size = 0;
      this.capped = false;
      this.abort = undefined;
      this.timedOut = false;
      this.endedInDispatch = false;
      this.dispatching = true;
      this.prober.dispatcherFor(t).dispatch(t.dispatch, this);
      this.dispatching = false;
      if (!this.endedInDispatch) return; // in flight: end() takes the next one
    }
    clearTimeout(this.timer); // nothing left for this lane
  }

  private arm(): void {
    this.armed = true;
    if (this.timer) this.timer.refresh();
    else this.timer = setTimeout(() => this.expire(), this.prober.timeoutMs).unref();
  }

  private expire(): void {
    if (!this.armed || !this.abort) return; // fired between two probes: nothing to cut
    this.timedOut = true;
    this.abort(new Error(`no answer within ${this.prober.timeoutMs} ms`));
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
    this.arm();
  }

  onHeaders(statusCode: number): boolean {
    this.status = statusCode;
    this.arm();
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.arm();
    if (this.capped) return true;
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.size >= BODY_LIMIT) {
      this.capped = true;
      this.abort?.(new Error('probe body over the limit'));
    }
    return true;
  }

  onComplete(): void {
    this.end(this.answer());
  }

  onError(err: Error): void {
    // a body cut at the limit: the answer is what came before the cut
    if (this.capped) return this.end(this.answer());
    const e = err as Error & { code?: string; cause?: { code?: string } };
    const timedOut = this.timedOut || e.code === 'UND_ERR_CONNECT_TIMEOUT';
    const why = timedOut ? `no answer within ${this.prober.timeoutMs} ms` : e.code ?? e.cause?.code ?? e.message;
    this.end({ ok: false, reason: why.slice(0, 300) });
  }

  /** What came back. An answer like the guest's last one is not a new object: the first round's
   *  answers all outlived it, so V8 would allocate every later one straight in old space. */
  private answer(): ProbeResult {
    const size = Math.min(this.size, BODY_LIMIT);
    const body = this.chunks.length === 1 ? this.chunks[0].toString('utf8', 0, size) : Buffer.concat(this.chunks).toString('utf8', 0, size);
    this.chunks.length = 0;
    const ok = this.status >= 200 && this.status < 300;
    const cert = certDays(body);
    const reason = ok ? undefined : `HTTP ${this.status}${body ? `: ${body.replace(/\s+/g, ' ').slice(0, 200)}` : ''}`;
    const prev = this.round.last(this.vmid);
    if (prev && prev.ok === ok && prev.reason === reason && prev.certDaysLeft === cert) return prev;
    const result: ProbeResult = { ok };
    if (cert !== undefined) result.certDaysLeft = cert;
    if (reason !== undefined) result.reason = reason;
    return result;
  }

  private end(r: ProbeResult): void {
    this.abort = undefined;
    this.armed = false;
    this.round.record(this.vmid, r);
    if (this.dispatching) this.endedInDispatch = true;
    else this.next();
  }
}

function certDays(body: string): number | undefined {
  if (!body.startsWith('{')) return undefined;
  try {
    const v = (JSON.parse(body) as { certDaysLeft?: unknown }).certDaysLeft;
    return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}
