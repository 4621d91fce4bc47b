// Talking to the simulator's /sim API from tests and benches (plain HTTP or HTTPS with its CA).
import { Agent, fetch } from 'undici';

export interface SimEndpoint {
  url: string;
  tokenId: string;
  tokenSecret: string;
  caPem?: string;
}

export function simApi(sim: SimEndpoint) {
  const dispatcher = sim.caPem ? new Agent({ connect: { ca: sim.caPem } }) : undefined;
  const headers = { Authorization: `PVEAPIToken=${sim.tokenId}=${sim.tokenSecret}`, 'Content-Type': 'application/json' };
  const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const r = await fetch(`${sim.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), dispatcher });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text.slice(0, 200)}`);
    return (text ? JSON.parse(text) : undefined) as T;
  };
  return {
    fault: (kind: string, target: string | number, durationMs?: number, params?: Record<string, unknown>) =>
      call<{ id: string }>('POST', '/sim/faults', { kind, target: String(target), ...(durationMs ? { durationMs } : {}), ...(params ? { params } : {}) }),
    heal: (id: string) => call<unknown>('DELETE', `/sim/faults/${id}`),
    faults: () => call<unknown>('GET', '/sim/faults'),
    fleet: () => call<{ guests: { vmid: number; state: string; status: string; health: string; healthy: boolean; node: string; layer: number }[]; nodes: { name: string; online: boolean; fenced: boolean }[] }>('GET', '/sim/fleet'),
    health: async (vmid: number) => {
      const r = await fetch(`${sim.url}/sim/health/${vmid}`, { headers, dispatcher });
      await r.text();
      return r.status === 200;
    },
    close: async () => dispatcher?.close(),
  };
}
