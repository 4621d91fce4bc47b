// After the PVE task: is the guest where the action meant it to be? Running and healthy after a
// start/reboot, stopped after a stop/shutdown, on the target node after a migrate. Health comes
// from the guest's health URL (manifest), else the simulator's /sim/health/{vmid}, else sensing's
// fresh record in fleet-state, else PVE's status alone.
import { Agent, fetch } from 'undici';
import { HomeostatError, sleep } from '../../core/mod.ts';
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

export function expectedState(a: Action): Want {
  if (a.verb === 'stop' || a.verb === 'shutdown') return 'stopped';
  if (a.verb === 'start' || a.verb === 'reboot') return 'running';
  return 'exists';
}

export class Verifier {
  private simulator: boolean | undefined;
  private readonly dispatcher: Agent;

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
    for (;;) {
      signal.throwIfAborted();
      try {
        if (want === 'running') {
          // the health check first: while the guest boots it alone says "not yet", one call per
          // look instead of two (a 5,000-guest boot has hundreds of starts verifying at once);
          // healthy counts only once PVE also reports it running
          const h = await this.health(g.vmid, since);
          if (!h.ok) why = `not healthy: ${h.reason}`;
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
        if (signal.aborted) throw e;
        why = (e as Error).message;
      }
      if (Date.now() > deadline) {
        throw new HomeostatError('HOMEOSTAT_ERR_TIMEOUT', `guest ${g.vmid} not ${want === 'running' ? 'running and healthy' : want} within ${timeoutMs} ms after ${a.verb} (${why.slice(0, 300)})`);
      }
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

  private async health(vmid: number, since: number): Promise<{ ok: boolean; reason?: string }> {
    const spec = this.fleet.byVmid.get(vmid);
    const url = spec?.health ?? ((await this.isSimulator()) ? new URL(`/sim/health/${vmid}`, this.opts.pveUrl).href : undefined);
    if (url) {
      try {
        const res = await fetch(url, { headers: spec?.health ? {} : this.headers(), dispatcher: this.dispatcher, signal: AbortSignal.timeout(this.opts.probeTimeoutMs) });
        const body = (await res.text()).slice(0, 200);
        return res.status >= 200 && res.status < 300 ? { ok: true } : { ok: false, reason: `HTTP ${res.status} ${body.replace(/\s+/g, ' ')}` };
      } catch (e) {
        return { ok: false, reason: (e as Error).name === 'TimeoutError' ? `no answer within ${this.opts.probeTimeoutMs} ms` : (e as Error).message };
      }
    }
    // no probe target of our own: sensing's record counts when it was written after the task
    const rec = (await kvGet(this.bus.kv.fleetState, kvKeys.guest(vmid), GuestRecord))?.value;
    if (!rec || Date.parse(rec.updatedAt) < since) return { ok: true };
    return rec.health === 'unhealthy' ? { ok: false, reason: rec.lastProbeReason ?? 'sensing reports unhealthy' } : { ok: true };
  }

  async close(): Promise<void> {
    await this.dispatcher.close().catch(() => undefined);
  }
}
