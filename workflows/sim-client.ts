// The simulator's own API (`/sim/*`, outside the PVE namespace, same token). Workflows use it only
// when PVE_URL points at the simulator: to read the whole fleet in one call, to fence a downed
// node, and to inject chaos faults. Against real PVE there is no such API and this is undefined.
import { Agent, fetch } from 'undici';
import { HomeostatError } from '../core/mod.ts';

export interface SimGuestView {
  vmid: number;
  node: string;
  /** PVE status: running | stopped | unknown (node down). */
  status: string;
  healthy: boolean;
}

export interface SimNodeView {
  name: string;
  online: boolean;
  fenced: boolean;
}

export interface SimFleetView {
  nodes: SimNodeView[];
  guests: SimGuestView[];
}

export interface SimFault {
  id: string;
  kind: string;
  target: string;
  params?: Record<string, unknown>;
}

export interface SimClient {
  fleet(): Promise<SimFleetView>;
  fence(node: string): Promise<void>;
  injectFault(req: { kind: string; target: string | number; durationMs?: number; params?: Record<string, unknown> }): Promise<SimFault>;
  /** Heal a fault; false when it was already gone. */
  healFault(id: string): Promise<boolean>;
  faults(): Promise<SimFault[]>;
  close(): Promise<void>;
}

export interface SimEndpointOptions {
  url: string;
  tokenId: string;
  tokenSecret: string;
  caPem?: string;
  insecure?: boolean;
}

class SimHttpError extends HomeostatError {
  constructor(readonly status: number, message: string) {
    super(status >= 500 ? 'HOMEOSTAT_ERR_PVE_UNAVAILABLE' : 'HOMEOSTAT_ERR_PVE_BAD_REQUEST', message);
  }
}

export function simClient(opts: SimEndpointOptions): SimClient {
  const https = opts.url.startsWith('https:');
  const dispatcher = https ? new Agent({ connect: { ...(opts.caPem ? { ca: opts.caPem } : {}), ...(opts.insecure ? { rejectUnauthorized: false } : {}) } }) : new Agent();
  const headers = { Authorization: `PVEAPIToken=${opts.tokenId}=${opts.tokenSecret}`, 'Content-Type': 'application/json' };
  const base = opts.url.replace(/\/+$/, '');
  const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const r = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), dispatcher, signal: AbortSignal.timeout(10_000) });
    const text = await r.text();
    if (!r.ok) {
      let msg = text.slice(0, 300);
      try {
        msg = String((JSON.parse(text) as { error?: unknown }).error ?? msg);
      } catch {
        // not JSON: keep the text
      }
      throw new SimHttpError(r.status, `simulator ${method} ${path}: ${r.status} ${msg}`);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  };
  return {
    async fleet() {
      // the state view: what this client returns, not the full fleet's names, metrics and faults
      const v = await call<{ nodes: SimNodeView[]; guests: SimGuestView[] }>('GET', '/sim/fleet?view=state');
      return {
        nodes: v.nodes.map((n) => ({ name: n.name, online: n.online, fenced: n.fenced === true })),
        guests: v.guests.map((g) => ({ vmid: g.vmid, node: g.node, status: g.status, healthy: g.healthy === true })),
      };
    },
    async fence(node) {
      await call('POST', `/sim/fence/${encodeURIComponent(node)}`);
    },
    injectFault: (req) => call<SimFault>('POST', '/sim/faults', { ...req, target: String(req.target) }),
    async healFault(id) {
      try {
        await call('DELETE', `/sim/faults/${encodeURIComponent(id)}`);
        return true;
      } catch (e) {
        if (e instanceof SimHttpError && e.status === 404) return false;
        throw e;
      }
    },
    faults: () => call<SimFault[]>('GET', '/sim/faults'),
    close: () => dispatcher.close(),
  };
}

/** A SimClient when `url` answers `/sim/fleet` like the simulator, else undefined (real PVE). */
export async function detectSimulator(opts: Partial<SimEndpointOptions>): Promise<SimClient | undefined> {
  if (!opts.url || !opts.tokenId || !opts.tokenSecret) return undefined;
  const c = simClient(opts as SimEndpointOptions);
  try {
    const v = await c.fleet();
    if (Array.isArray(v.guests) && Array.isArray(v.nodes)) return c;
  } catch {
    // 404/501 from real PVE, or not reachable: not the simulator
  }
  await c.close();
  return undefined;
}
