// The simulator's own API, outside the PVE namespace and behind the same token: the fleet as the
// simulator sees it, fault injection, fencing, and each guest's own /health.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sleep } from '../../core/mod.ts';
import type { TokenAuth } from './auth.ts';
import { FaultRequestError } from './faults.ts';
import { sendJson } from './http-util.ts';
import { MiB, type SimGuest } from './model.ts';
import type { SimWorld } from './world.ts';

const JSON_TYPE = 'application/json; charset=utf-8';
const UNREACHABLE_DELAY_MS = 50;

type Health = { ok: true } | { ok: false; reason: string; unreachable?: boolean; starting?: boolean };

export function guestHealth(w: SimWorld, g: SimGuest): Health {
  const node = w.model.nodes.get(g.node)!;
  if (!w.model.online(node)) return { ok: false, reason: `connect ECONNREFUSED: node ${g.node} is down`, unreachable: true };
  if (g.phase === 'stopped') return { ok: false, reason: 'guest is stopped' };
  if (g.phase === 'starting' || g.phase === 'booting') return { ok: false, reason: 'guest is starting', starting: true };
  if (g.phase === 'stopping') return { ok: false, reason: 'guest is shutting down' };
  if (g.hung) return { ok: false, reason: 'no response: the guest is hung' };
  if (g.faults.unhealthy > 0) return { ok: false, reason: 'health check failed: service unhealthy' };
  return { ok: true };
}

/** Vmids one `GET /sim/health?vmids=…` may ask about (keeps the request line short). */
export const MAX_HEALTH_BATCH = 500;

/** One guest's row of `GET /sim/health?vmids=…`: what `/sim/health/{vmid}` would answer, for many
 *  guests in one call (the action agent verifies hundreds of booting guests at once; one probe each
 *  per look went unanswered under a 5,000-guest boot, bench/boot.ts). An unreachable guest is
 *  reported as such at once, not after a probe's delay. */
function healthRow(w: SimWorld, vmid: number): { vmid: number; status: string; reason?: string } {
  const g = w.model.guests.get(vmid);
  if (!g) return { vmid, status: 'unknown', reason: `no guest ${vmid}` };
  const h = guestHealth(w, g);
  if (h.ok) return { vmid, status: 'ok' };
  return { vmid, status: h.unreachable ? 'unreachable' : h.starting ? 'starting' : 'unhealthy', reason: h.reason };
}

function fleetView(w: SimWorld): unknown {
  const m = w.model;
  const now = Date.now();
  const nodes = [...m.nodes.values()].map((n) => ({
    name: n.name, role: n.spec.role, online: m.online(n), status: m.online(n) ? 'online' : 'offline', fenced: n.fenced,
    cpus: n.spec.cpus, memGiB: n.spec.memGiB, capacity: n.spec.capacity, guests: [...n.guests].map((g) => g.vmid).sort((a, b) => a - b),
    cpu: m.online(n) ? n.cpu : 0, mem: m.online(n) ? n.mem : 0, uptime: m.online(n) ? Math.floor((now - n.bootedAt) / 1000) : 0,
  }));
  const guests = [...m.guests.values()].map((g) => {
    const up = m.online(m.nodes.get(g.node)!);
    const h = guestHealth(w, g);
    const u = m.usage(g);
    return {
      vmid: g.vmid, name: g.config.hostname, node: g.node, type: g.type, layer: g.layer,
      state: up ? g.phase : 'unknown', status: up ? m.pveStatus(g) : 'unknown',
      health: h.ok ? 'ok' : h.unreachable ? 'unreachable' : h.starting ? 'starting' : 'unhealthy', healthy: h.ok, ...(h.ok ? {} : { reason: h.reason }),
      bootMs: g.bootMs, shutdownMs: g.shutdownMs, lock: g.lock ?? null, hung: g.hung, certDaysLeft: m.certDaysLeft(g),
      ha: g.ha?.state ?? null, faults: { ...g.faults },
      metrics: { cpu: u.cpu, mem: u.mem, maxmem: g.config.memory * MiB, disk: u.disk, maxdisk: g.maxdisk, netin: g.netin, netout: g.netout, uptime: m.uptimeSec(g, now) },
    };
  });
  return { name: m.clusterName, quorate: m.quorate(), timeScale: w.timeScale, nodes, guests, faults: w.faults.list() };
}

/** `GET /sim/fleet?view=state`: only what a poller of the whole fleet needs (the workflows'
 *  FleetObserver reads it every 50 ms while a workflow waits): each node's name/online/fenced and
 *  each guest's vmid/node/status/healthy. The full view of a 5,000-guest fleet is ~2.5 MB of JSON
 *  (names, metrics, faults); building, sending and parsing it took a third of the CPU of a
 *  2,000-guest layered boot (bench/boot.ts, profiled). */
function fleetStateView(w: SimWorld): unknown {
  const m = w.model;
  const nodes = [...m.nodes.values()].map((n) => ({ name: n.name, online: m.online(n), fenced: n.fenced }));
  const guests = [...m.guests.values()].map((g) => {
    const up = m.online(m.nodes.get(g.node)!);
    return { vmid: g.vmid, node: g.node, status: up ? m.pveStatus(g) : 'unknown', healthy: guestHealth(w, g).ok };
  });
  return { nodes, guests };
}

function parseJson(body: string): unknown {
  if (!body.trim()) return {};
  try {
    return JSON.parse(body);
  } catch {
    throw new FaultRequestError('body: not valid JSON');
  }
}

export async function handleSim(w: SimWorld, auth: TokenAuth, req: IncomingMessage, res: ServerResponse, url: URL, body: string): Promise<void> {
  const send = (status: number, data: unknown) => sendJson(res, status, undefined, data, JSON_TYPE);
  const a = auth.check(req.headers.authorization);
  if (!a.ok) return send(401, { error: `unauthorized: ${a.reason} (send Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET)` });
  const method = req.method ?? 'GET';
  const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent); // ['sim', …]
  const [, what, arg] = parts;
  try {
    if (what === 'fleet' && parts.length === 2) {
      if (method !== 'GET') return send(405, { error: 'use GET /sim/fleet' });
      const view = url.searchParams.get('view');
      if (view === 'state') return send(200, fleetStateView(w));
      if (view !== null && view !== 'full') return send(400, { error: `view: expected state or full, got '${view.slice(0, 40)}'` });
      return send(200, fleetView(w));
    }
    if (what === 'faults' && parts.length === 2) {
      if (method === 'GET') return send(200, w.faults.list());
      if (method === 'POST') return send(201, w.faults.inject(parseJson(body)));
      return send(405, { error: 'use GET or POST /sim/faults' });
    }
    if (what === 'faults' && parts.length === 3) {
      if (method !== 'DELETE') return send(405, { error: 'use DELETE /sim/faults/{id}' });
      const f = w.faults.heal(arg);
      return f ? send(200, { ...f, healed: true }) : send(404, { error: `no active fault '${arg}'` });
    }
    if (what === 'health' && parts.length === 2) {
      if (method !== 'GET') return send(405, { error: 'use GET /sim/health?vmids=1,2,3' });
      const list = (url.searchParams.get('vmids') ?? '').split(',').filter(Boolean);
      if (!list.length || list.length > MAX_HEALTH_BATCH || !list.every((v) => /^\d{1,9}$/.test(v))) {
        return send(400, { error: `vmids: expected 1 to ${MAX_HEALTH_BATCH} comma-separated vmids, got '${(url.searchParams.get('vmids') ?? '').slice(0, 40)}'` });
      }
      return send(200, { guests: list.map(Number).map((vmid) => healthRow(w, vmid)) });
    }
    if (what === 'health' && parts.length === 3) {
      if (method !== 'GET') return send(405, { error: 'use GET /sim/health/{vmid}' });
      const g = /^\d+$/.test(arg) ? w.model.guests.get(Number(arg)) : undefined;
      if (!g) return send(404, { status: 'unknown', error: `no guest ${arg}` });
      const h = guestHealth(w, g);
      if (h.ok) return send(200, { status: 'ok', vmid: g.vmid, name: g.config.hostname, certDaysLeft: w.model.certDaysLeft(g) });
      if (h.unreachable) await sleep(UNREACHABLE_DELAY_MS);
      return send(503, { status: h.starting ? 'starting' : 'unhealthy', vmid: g.vmid, name: g.config.hostname, reason: h.reason });
    }
    if (what === 'fence' && parts.length === 3) {
      if (method !== 'POST') return send(405, { error: 'use POST /sim/fence/{node}' });
      const n = w.model.nodes.get(arg);
      if (!n) return send(404, { error: `no node '${arg}'` });
      if (w.model.online(n)) return send(409, { error: `node '${arg}' is online; only a downed node can be fenced` });
      n.fenced = true;
      w.log.info({ node: n.name }, 'node fenced');
      return send(200, { node: n.name, fenced: true });
    }
    return send(404, { error: `no such simulator endpoint: ${method} ${url.pathname} (see /sim/fleet, /sim/faults, /sim/health/{vmid}, /sim/health?vmids=…, /sim/fence/{node})` });
  } catch (e) {
    if (e instanceof FaultRequestError) return send(400, { error: e.message });
    throw e;
  }
}
