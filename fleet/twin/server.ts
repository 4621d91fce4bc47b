// The simulator's HTTP(S) front: PVE token auth, the /api2/json namespace checked against the
// official schema, simulated node outages and API faults, and the /sim fault-injection API.
import { randomUUID } from 'node:crypto';
import { createServer as createHttp, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { createServer as createHttps } from 'node:https';
import type { AddressInfo } from 'node:net';
import { silentLogger, type Logger } from '../../bus/mod.ts';
import type { Fleet } from '../manifest.ts';
import { makeSelfSignedCert } from './cert.ts';
import { ApiError, GuestOps } from './guest-ops.ts';
import { API_SCHEMA, verifyParams } from './params.ts';
import { PVE_ROUTES, type Handler } from './pve-routes.ts';
import { fence, FaultInjector, simFleet, simHealth, type SimReply } from './sim-routes.ts';
import { SimState } from './state.ts';
import { TaskTable } from './tasks.ts';

export interface SimulatorOptions {
  fleet: Fleet;
  port?: number;
  host?: string;
  http?: boolean;
  tokenId?: string;
  tokenSecret?: string;
  timeScale?: number;
  log?: Logger;
}

export interface SimulatorHandle {
  url: string;
  port: number;
  tokenId: string;
  tokenSecret: string;
  fingerprint?: string;
  caPem?: string;
  state: SimState;
  faults: FaultInjector;
  stop(): Promise<void>;
}

interface Route { method: string; template: string; re: RegExp; keys: string[]; handler: Handler }

const ROUTES: Route[] = Object.entries(PVE_ROUTES).map(([k, handler]) => {
  const [method, template] = k.split(' ');
  const keys: string[] = [];
  const re = new RegExp(`^${template.replace(/\{(\w+)\}/g, (_m, name: string) => (keys.push(name), '([^/]+)'))}$`);
  return { method, template, re, keys, handler };
});
const KNOWN_PATHS = ROUTES.map((r) => r.re);

const JSON_TYPE = 'application/json;charset=UTF-8';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function send(res: ServerResponse, status: number, body: unknown, statusMessage?: string) {
  const text = JSON.stringify(body);
  res.writeHead(status, statusMessage ?? undefined, { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'max-age=0', Server: 'pve-api-daemon/3.0' });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<Record<string, string>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    size += (c as Buffer).length;
    if (size > 1024 * 1024) throw new ApiError(413, 'request entity too large');
    chunks.push(c as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return {};
  if ((req.headers['content-type'] ?? '').includes('application/json')) {
    let obj: unknown;
    try {
      obj = JSON.parse(text);
    } catch {
      throw new ApiError(400, 'malformed JSON body');
    }
    if (!obj || typeof obj !== 'object' || Array.isArray(obj)) throw new ApiError(400, 'expected a JSON object');
    return Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, typeof v === 'boolean' ? (v ? '1' : '0') : String(v)]));
  }
  return Object.fromEntries(new URLSearchParams(text));
}

export async function startSimulator(opts: SimulatorOptions): Promise<SimulatorHandle> {
  const log = opts.log ?? silentLogger;
  const state = new SimState(opts.fleet, opts.timeScale ?? 1);
  const tasks = new TaskTable();
  const tokenId = opts.tokenId ?? 'homeostat@pve!sim';
  const tokenSecret = opts.tokenSecret ?? randomUUID();
  const ops = new GuestOps(state, tasks, tokenId);
  const faults = new FaultInjector(state);
  const host = opts.host ?? '127.0.0.1';
  const expected = `PVEAPIToken=${tokenId}=${tokenSecret}`;

  const authorize = (req: IncomingMessage): string | undefined => {
    const h = req.headers.authorization;
    if (!h) return 'No ticket';
    if (!/^PVEAPIToken=[^@\s]+@[^!\s]+![^=\s]+[=:]\S+$/.test(h)) return 'invalid token value!';
    return h.replace(/^(PVEAPIToken=[^=:]+)[:]/, '$1=') === expected ? undefined : 'invalid token value!';
  };

  const handleSim = async (req: IncomingMessage, path: string): Promise<SimReply> => {
    const method = req.method ?? 'GET';
    let m: RegExpExecArray | null;
    if (method === 'GET' && path === '/sim/fleet') return { status: 200, body: simFleet(state) };
    if (method === 'GET' && path === '/sim/faults') return { status: 200, body: faults.list() };
    if (method === 'POST' && path === '/sim/faults') {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
      } catch {
        return { status: 400, body: { error: 'expected a JSON body {kind, target, durationMs?}' } };
      }
      const f = faults.inject(body);
      log.info({ fault: f }, 'fault injected');
      return { status: 201, body: { id: f.id, fault: f } };
    }
    if (method === 'DELETE' && (m = /^\/sim\/faults\/([\w-]+)$/.exec(path))) {
      return faults.heal(m[1]) ? { status: 200, body: { id: m[1], healed: true } } : { status: 404, body: { error: `no fault ${m[1]}` } };
    }
    if (method === 'GET' && (m = /^\/sim\/health\/(\d+)$/.exec(path))) return simHealth(state, Number(m[1]));
    if (method === 'POST' && (m = /^\/sim\/fence\/([\w-]+)$/.exec(path))) return fence(state, m[1]);
    return { status: 404, body: { error: `no such simulator endpoint: ${method} ${path}` } };
  };

  const handlePve = async (req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams) => {
    const method = req.method ?? 'GET';
    const nodeInPath = /^\/nodes\/([^/]+)/.exec(path)?.[1];
    const slow = state.activeFaults('api-slow').filter((f) => f.target === '*' || f.target === nodeInPath);
    if (slow.length) await sleep(Math.max(...slow.map((f) => Number(f.params.delayMs ?? 3000))));
    if (state.activeFaults('api-error').some((f) => f.target === '*' || f.target === nodeInPath)) {
      return send(res, 500, { data: null, message: 'simulated api-error' }, 'Internal Server Error (simulated api-error)');
    }
    const route = ROUTES.find((r) => r.method === method && r.re.test(path));
    if (!route) {
      const known = KNOWN_PATHS.some((re) => re.test(path));
      return send(res, 501, { data: null }, `Method '${method} /api2/json${path}' not implemented${known ? '' : ''}`);
    }
    const match = route.re.exec(path)!;
    const pathParams: Record<string, string> = {};
    route.keys.forEach((k, i) => (pathParams[k] = decodeURIComponent(match[i + 1])));
    const params = method === 'GET' || method === 'DELETE' ? Object.fromEntries(query) : await readBody(req);
    const schema = API_SCHEMA[route.template]?.[method];
    const errors = schema ? verifyParams(schema, { ...params, ...pathParams }) : {};
    if (Object.keys(errors).length) return send(res, 400, { data: null, errors }, 'Parameter verification failed.');
    if (pathParams.node) {
      const n = state.nodes.get(pathParams.node);
      if (!n) return send(res, 500, { data: null, message: `hostname lookup '${pathParams.node}' failed - failed to get address info for: ${pathParams.node}: Name or service not known` }, `hostname lookup '${pathParams.node}' failed`);
      // a down node does not answer; once fenced, its guests may be moved away (what PVE HA does)
      const fencedMove = n.fenced && method === 'POST' && route.template.endsWith('/migrate');
      if (!n.online && !fencedMove) {
        await sleep(50);
        return send(res, 595, { data: null }, `Connection refused`);
      }
    }
    const data = route.handler({ state, tasks, ops, path: pathParams, params });
    send(res, 200, { data: data ?? null });
  };

  const handler = async (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://sim');
    const path = url.pathname;
    try {
      const denied = authorize(req);
      if (path.startsWith('/api2/json/')) {
        if (denied && !(path === '/api2/json/access/ticket' && req.method === 'POST')) return send(res, 401, { data: null }, denied);
        return await handlePve(req, res, path.slice('/api2/json'.length), url.searchParams);
      }
      if (path.startsWith('/sim/')) {
        if (denied) return send(res, 401, { data: null, error: denied }, denied);
        const r = await handleSim(req, path);
        if (r.delayMs) await sleep(r.delayMs);
        return send(res, r.status, r.body);
      }
      return send(res, 501, { data: null }, `Method '${req.method} ${path}' not implemented`);
    } catch (e) {
      if (e instanceof ApiError) {
        const msg = e.message.replace(/\n/g, ' ');
        return send(res, e.status, { data: null, message: `${msg}\n`, ...(e.errors ? { errors: e.errors } : {}), ...(path.startsWith('/sim/') ? { error: msg } : {}) }, msg.slice(0, 200));
      }
      log.error({ err: (e as Error).message, path }, 'simulator handler failed');
      return send(res, 500, { data: null, message: 'internal simulator error' }, 'internal simulator error');
    }
  };

  let server: Server;
  let fingerprint: string | undefined;
  let caPem: string | undefined;
  const onRequest = (req: IncomingMessage, res: ServerResponse) => void handler(req, res);
  if (opts.http) server = createHttp(onRequest);
  else {
    const c = makeSelfSignedCert(host);
    fingerprint = c.fingerprint;
    caPem = c.cert;
    server = createHttps({ key: c.key, cert: c.cert }, onRequest);
  }
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8006, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = `${opts.http ? 'http' : 'https'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
  return {
    url, port, tokenId, tokenSecret, fingerprint, caPem, state, faults,
    stop: async () => {
      tasks.stop();
      faults.stop();
      server.closeAllConnections?.();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
