// The request handler: PVE API under /api2/json and /api2/extjs (auth → route → API faults → node
// → params → handler), the fault-injection API under /sim. Order of checks follows pve-http-server:
// an unknown method is 501 before anything else, the node is resolved (proxied) before the
// parameters are verified on it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sleep } from '../../core/mod.ts';
import type { TokenAuth } from './auth.ts';
import { BodyTooLarge, readBody, sendJson } from './http-util.ts';
import { validateParams, type RawParams } from './params.ts';
import { PveHttpError } from './pve-error.ts';
import { clusterRoutes } from './routes-cluster.ts';
import { guestRoutes } from './routes-guests.ts';
import { infraRoutes } from './routes-infra.ts';
import { handleSim } from './routes-sim.ts';
import { buildRoutes, matchRoute } from './schema.ts';
import { WithTotal, type PveHandler, type SimWorld } from './world.ts';

/** PVE's formatters: `json` answers errors with their HTTP status; `extjs` (the web UI's) always
 *  with 200 and `success: 0`, the status and message inside the body (pve-http-server's
 *  prepare_response_data). */
const FORMATS = { '/api2/json': 'json', '/api2/extjs': 'extjs' } as const;
type Format = (typeof FORMATS)[keyof typeof FORMATS];
/** What a fenced (dead, confirmed off) node still "answers": moving its guests away and their tasks. */
const FENCED_OK = new Set([
  'POST /nodes/{node}/lxc/{vmid}/migrate', 'POST /nodes/{node}/qemu/{vmid}/migrate',
  'GET /nodes/{node}/tasks', 'GET /nodes/{node}/tasks/{upid}/status', 'GET /nodes/{node}/tasks/{upid}/log',
]);
const DOWN_NODE_DELAY_MS = 50;

/** Query string and body (form-urlencoded or JSON) as PVE sees them: strings, booleans as 0/1. */
function collectParams(url: URL, body: string, contentType: string | undefined): RawParams {
  const out: RawParams = {};
  url.searchParams.forEach((v, k) => (out[k] = v));
  if (!body) return out;
  if (contentType?.includes('application/json')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      throw new PveHttpError(400, 'unable to parse JSON request body');
    }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new PveHttpError(400, 'JSON request body must be an object');
    for (const [k, v] of Object.entries(parsed)) {
      if (v === null || v === undefined) continue;
      out[k] = typeof v === 'boolean' ? (v ? '1' : '0') : Array.isArray(v) ? v.join(',') : typeof v === 'object' ? JSON.stringify(v) : String(v);
    }
  } else {
    new URLSearchParams(body).forEach((v, k) => (out[k] = v));
  }
  return out;
}

export function createRequestHandler(w: SimWorld, auth: TokenAuth): (req: IncomingMessage, res: ServerResponse) => void {
  const routes = buildRoutes();
  const handlers: Record<string, PveHandler> = { ...clusterRoutes, ...guestRoutes, ...infraRoutes };

  async function pve(req: IncomingMessage, res: ServerResponse, url: URL, body: string, prefix: string, format: Format): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    const rel = url.pathname.slice(prefix.length) || '/';
    const isTicket = rel === '/access/ticket' || rel === '/access/ticket/';
    let user = '';
    if (!isTicket) {
      const a = auth.check(req.headers.authorization);
      if (!a.ok) return sendJson(res, 401, a.reason, { data: null });
      user = a.user;
    }
    const match = matchRoute(routes, rel);
    const def = match?.route.methods[method];
    const key = match && `${method} ${match.route.template}`;
    const handler = key ? handlers[key] : undefined;
    if (!match || !def || !handler) throw new PveHttpError(501, `Method '${method} ${rel}' not implemented`);

    const nodeName = match.pathParams.node;
    const effects = w.faults.apiEffects(nodeName);
    if (effects.delayMs) await sleep(effects.delayMs);
    if (effects.error) throw new PveHttpError(500, `Internal Server Error (simulated api-error ${effects.error.id})`);

    let node;
    if (nodeName !== undefined) {
      node = w.model.nodes.get(nodeName);
      if (!node) throw new PveHttpError(500, `hostname lookup '${nodeName}' failed - failed to get address info for: ${nodeName}: Name or service not known`);
      if (!w.model.online(node) && !(node.fenced && FENCED_OK.has(key!))) {
        await sleep(DOWN_NODE_DELAY_MS);
        throw new PveHttpError(595, 'No route to host');
      }
    }

    const raw = collectParams(url, body, req.headers['content-type']);
    for (const k of Object.keys(match.pathParams)) {
      if (raw[k] !== undefined) throw new PveHttpError(400, `Parameter verification failed - duplicate parameter '${k}'`);
    }
    const checked = validateParams(def.parameters, { ...raw, ...match.pathParams });
    if (!checked.ok) throw new PveHttpError(400, 'Parameter verification failed.', checked.errors);

    const result = await handler(w, { params: checked.values, node, user });
    const extjs = format === 'extjs' ? { success: 1 } : {};
    // PVE adds `total` only when it is non-zero
    if (result instanceof WithTotal) return sendJson(res, 200, undefined, { data: result.data, ...(result.total ? { total: result.total } : {}), ...extjs });
    sendJson(res, 200, undefined, { data: result ?? null, ...extjs });
  }

  function sendPveError(res: ServerResponse, e: PveHttpError, format: Format): void {
    // PVE passes a handler's `die "…\n"` through with its newline; its own 501 text has none
    const message = e.status === 501 ? e.message : `${e.message}\n`;
    if (format === 'extjs') {
      return sendJson(res, 200, undefined, { data: null, ...(e.errors ? { errors: e.errors } : {}), message, status: e.status, success: 0 });
    }
    const out: Record<string, unknown> = { data: null, message };
    if (e.errors) out.errors = e.errors;
    sendJson(res, e.status, e.message, out);
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sim.invalid');
    const prefix = Object.keys(FORMATS).find((p) => url.pathname === p || url.pathname.startsWith(`${p}/`)) as keyof typeof FORMATS | undefined;
    const format: Format = prefix ? FORMATS[prefix] : 'json';
    try {
      const body = await readBody(req);
      if (prefix) return await pve(req, res, url, body, prefix, format);
      if (url.pathname.startsWith('/sim/')) return await handleSim(w, auth, req, res, url, body);
      sendJson(res, 404, 'Not Found', { data: null });
    } catch (e) {
      if (e instanceof PveHttpError) return sendPveError(res, e, format);
      if (e instanceof BodyTooLarge) return sendJson(res, 413, 'Request Entity Too Large', { data: null });
      w.log.error({ err: (e as Error).message, url: req.url, method: req.method }, 'simulator request failed');
      sendJson(res, 500, `internal error: ${(e as Error).message}`, { data: null });
    }
  }

  return (req, res) => void handle(req, res);
}
