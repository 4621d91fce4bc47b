// Health probes: HTTP GET of each running guest's health URL (the manifest's `health`, or the
// simulator's /sim/health/{vmid} when the PVE endpoint is the simulator), concurrency-limited,
// each with its own timeout. A probe never throws: it answers ok or not, with a reason.
import { Agent, fetch, type Dispatcher } from 'undici';
import type { Logger } from '../../bus/mod.ts';
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

  constructor(
    private readonly opts: SensingOptions,
    private readonly fleet: Fleet,
    private readonly log: Logger,
  ) {
    const tls = opts.caPem ? { ca: opts.caPem } : opts.insecure ? { rejectUnauthorized: false } : {};
    this.simDispatcher = new Agent({ connect: tls, keepAliveTimeout: 10_000, connections: opts.probeConcurrency });
    this.guestDispatcher = new Agent({ keepAliveTimeout: 10_000 });
    if (!opts.pveUrl) this.simulator = false;
  }

  private authHeaders(): Record<string, string> {
    return this.opts.tokenId && this.opts.tokenSecret ? { authorization: `PVEAPIToken=${this.opts.tokenId}=${this.opts.tokenSecret}` } : {};
  }

  /** Asks once whether the PVE endpoint is the simulator; retried on later rounds only while the answer is unclear. */
  async detectSimulator(): Promise<void> {
    if (this.simulator !== undefined || !this.opts.pveUrl) return;
    try {
      const res = await fetch(new URL('/sim/fleet', this.opts.pveUrl), {
        headers: this.authHeaders(),
        dispatcher: this.simDispatcher,
        signal: AbortSignal.timeout(Math.max(this.opts.probeTimeoutMs, 2000)),
      });
      await res.body?.cancel().catch(() => undefined);
      if (res.status >= 500) return; // the API may be failing right now: ask again next round
      this.simulator = res.status === 200;
      if (res.status === 401) this.log.warn('the PVE endpoint refused the token on /sim/fleet; probing manifest health URLs only');
      this.log.info({ simulator: this.simulator }, this.simulator ? 'PVE endpoint is the simulator: probing /sim/health/{vmid}' : 'PVE endpoint is not the simulator');
    } catch (e) {
      this.log.debug({ err: (e as Error).message }, 'simulator detection failed; will retry');
    }
  }

  /** The URL probed for a guest, or undefined when there is nothing to probe (PVE status alone counts). */
  target(vmid: number): { url: string; sim: boolean } | undefined {
    const spec = this.fleet.byVmid.get(vmid);
    if (spec?.health) return { url: spec.health, sim: false };
    if (this.simulator && this.opts.pveUrl) return { url: new URL(`/sim/health/${vmid}`, this.opts.pveUrl).href, sim: true };
    return undefined;
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
      const res = await fetch(t.url, {
        headers: t.sim ? this.authHeaders() : {},
        dispatcher,
        signal: AbortSignal.timeout(this.opts.probeTimeoutMs),
      });
      const body = await readCapped(res.body);
      const result: ProbeResult = { ok: res.status >= 200 && res.status < 300 };
      const cert = certDays(body);
      if (cert !== undefined) result.certDaysLeft = cert;
      if (!result.ok) result.reason = `HTTP ${res.status}${body ? `: ${body.replace(/\s+/g, ' ').slice(0, 200)}` : ''}`;
      return result;
    } catch (e) {
      const err = e as Error & { cause?: { code?: string } };
      const why = err.name === 'TimeoutError' ? `no answer within ${this.opts.probeTimeoutMs} ms` : err.cause?.code ?? err.message;
      return { ok: false, reason: why.slice(0, 300) };
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.simDispatcher.close(), this.guestDispatcher.close()]);
  }
}

async function readCapped(body: ReadableStream<Uint8Array> | null): Promise<string> {
  if (!body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
      if (size >= BODY_LIMIT) {
        await reader.cancel();
        break;
      }
    }
  } finally {
    reader.releaseLock();
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
