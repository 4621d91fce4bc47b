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

export class Prober {
  /** undefined until the PVE endpoint has answered /sim/fleet one way or the other. */
  simulator: boolean | undefined;
  private readonly simDispatcher: Agent;
  private readonly guestDispatcher: Agent;
  private readonly auth: Record<string, string>;
  /** Probe targets are built once per guest (thousands of probes per round). */
  private readonly targets = new Map<number, { url: string; sim: boolean } | null>();

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
    if (this.simulator === undefined) return this.fleet.byVmid.get(vmid)?.health ? { url: this.fleet.byVmid.get(vmid)!.health!, sim: false } : undefined;
    let t = this.targets.get(vmid);
    if (t === undefined) {
      const spec = this.fleet.byVmid.get(vmid);
      t = spec?.health ? { url: spec.health, sim: false } : this.simulator && this.opts.pveUrl ? { url: new URL(`/sim/health/${vmid}`, this.opts.pveUrl).href, sim: true } : null;
      this.targets.set(vmid, t);
    }
    return t ?? undefined;
  }

  async probeAll(vmids: readonly number[]): Promise<Map<number, ProbeResult>> {
    const withTarget = vmids.filter((v) => this.target(v));
    const results = await mapLimit(withTarget, this.opts.probeConcurrency, (v) => this.probe(v));
    return new Map(withTarget.map((v, i) => [v, results[i]]));
  }

  async probe(vmid: number): Promise<ProbeResult> {
    const t = this.target(vmid);
    if (!t) return { ok: true };
    const dispatcher: Dispatcher = t.sim ? this.simDispatcher : this.guestDispatcher;
    try {
      // undici's request(), not fetch(): a probe per guest per round must stay cheap in CPU and garbage.
      const res = await request(t.url, {
        method: 'GET',
        headers: t.sim ? this.authHeaders() : {},
        dispatcher,
        headersTimeout: this.opts.probeTimeoutMs,
        bodyTimeout: this.opts.probeTimeoutMs,
      });
      const body = await readCapped(res.body);
      const result: ProbeResult = { ok: res.statusCode >= 200 && res.statusCode < 300 };
      const cert = certDays(body);
      if (cert !== undefined) result.certDaysLeft = cert;
      if (!result.ok) result.reason = `HTTP ${res.statusCode}${body ? `: ${body.replace(/\s+/g, ' ').slice(0, 200)}` : ''}`;
      return result;
    } catch (e) {
      const err = e as Error & { code?: string; cause?: { code?: string } };
      const timedOut = err.code === 'UND_ERR_HEADERS_TIMEOUT' || err.code === 'UND_ERR_BODY_TIMEOUT' || err.code === 'UND_ERR_CONNECT_TIMEOUT';
      const why = timedOut ? `no answer within ${this.opts.probeTimeoutMs} ms` : err.code ?? err.cause?.code ?? err.message;
      return { ok: false, reason: why.slice(0, 300) };
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.simDispatcher.close(), this.guestDispatcher.close()]);
  }
}

async function readCapped(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size >= BODY_LIMIT) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).toString('utf8', 0, Math.min(size, BODY_LIMIT));
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
