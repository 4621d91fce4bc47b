// The web console over node:http: the page and its modules (preact, htm and uPlot straight from
// node_modules — no CDN, no bundler), a JSON API (api.ts) and the live feed (live.ts, SSE).
//
// Access: on loopback, no token is needed, but the Host header must name loopback (a DNS-rebinding
// page cannot drive it) and state-changing requests must come from the console's own origin as
// JSON. On any other address a token is required: `Authorization: Bearer <token>`, or opening
// `/?token=<token>` once, which sets an HttpOnly SameSite=Strict cookie.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Bus, type Signer } from '../../bus/mod.ts';
import { describeError, HomeostatError, isHomeostatError, type Logger } from '../../core/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import { closeServer, listen, urlHost } from '../metrics-server.ts';
import { readBody } from '../../fleet/sim/http-util.ts';
import { ConsoleApi } from './api.ts';
import { startLiveFeed } from './live.ts';

const WEB = join(dirname(fileURLToPath(import.meta.url)), 'web');
const WEB_FILES = ['app.js', 'board.js', 'panels.js', 'chaos.js', 'style.css'];
const COOKIE = 'homeostat_console';
const TYPES: Record<string, string> = { '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.html': 'text/html; charset=utf-8', '.png': 'image/png' };

/** The page's third-party modules, served from node_modules under /vendor/. */
const VENDOR: Record<string, [pkg: string, file: string]> = {
  'preact.mjs': ['preact', 'dist/preact.mjs'],
  'preact-hooks.mjs': ['preact', 'hooks/dist/hooks.mjs'],
  'htm.mjs': ['htm', 'dist/htm.mjs'],
  'htm-preact.mjs': ['htm', 'preact/index.mjs'],
  'uPlot.esm.js': ['uplot', 'dist/uPlot.esm.js'],
  'uPlot.min.css': ['uplot', 'dist/uPlot.min.css'],
};

function packageDir(pkg: string): string {
  const main = createRequire(import.meta.url).resolve(pkg);
  const marker = `${'/node_modules/'}${pkg}/`;
  return main.slice(0, main.lastIndexOf(marker) + marker.length);
}

export interface ConsoleOptions {
  bus: Bus;
  fleet: Fleet;
  log: Logger;
  port: number;
  host?: string;
  /** Required unless `host` is loopback. */
  token?: string;
  /** Who approvals and commands are recorded as. */
  operator?: string;
  /** The operator key that signs approvals and denials. */
  signer?: Signer;
}

export interface ConsoleServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || /^127\./.test(host);

/** Refuse, before anything starts, a console other machines could reach without a token. */
export function checkConsoleAccess(host: string, token: string | undefined): void {
  if (!isLoopback(host) && !token) {
    throw new HomeostatError('HOMEOSTAT_ERR_USAGE', `--console-host ${host}: a console reachable from other machines needs a token (--console-token or HOMEOSTAT_CONSOLE_TOKEN)`);
  }
  if (token !== undefined && token.length < 16) throw new HomeostatError('HOMEOSTAT_ERR_USAGE', '--console-token: expected at least 16 characters');
}

export async function startConsole(opts: ConsoleOptions): Promise<ConsoleServer> {
  const host = opts.host ?? '127.0.0.1';
  checkConsoleAccess(host, opts.token);
  const api = new ConsoleApi(opts.bus, opts.fleet, opts.operator ?? 'operator:console', opts.signer);
  const live = startLiveFeed({ bus: opts.bus, log: opts.log, snapshot: () => api.status() });

  // Files are read once: the page is small, and a console must not depend on the disk staying put.
  const files = new Map<string, { body: Buffer; type: string }>();
  for (const f of WEB_FILES) files.set(`/app/${f}`, { body: readFileSync(join(WEB, f)), type: TYPES[extname(f)] });
  for (const [name, [pkg, file]] of Object.entries(VENDOR)) files.set(`/vendor/${name}`, { body: readFileSync(join(packageDir(pkg), file)), type: TYPES[extname(name)] });
  const html = readFileSync(join(WEB, 'index.html'), 'utf8');
  const importMap = /<script type="importmap">([\s\S]*?)<\/script>/.exec(html)?.[1] ?? '';
  const csp = [
    "default-src 'self'",
    `script-src 'self' 'sha256-${createHash('sha256').update(importMap).digest('base64')}'`,
    "style-src 'self' 'unsafe-inline'", // uPlot sizes its canvas with inline styles
    "img-src 'self' data:",
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
  ].join('; ');

  const authorized = (req: IncomingMessage): boolean => {
    if (!opts.token) return true;
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const cookie = new RegExp(`(?:^|;\\s*)${COOKIE}=([^;]+)`).exec(req.headers.cookie ?? '')?.[1];
    const given = bearer ?? (cookie ? decodeURIComponent(cookie) : undefined);
    return given !== undefined && same(given, opts.token);
  };
  const hostOk = (req: IncomingMessage): boolean => {
    if (opts.token) return true;
    const h = (req.headers.host ?? '').replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    return isLoopback(h);
  };

  const server = createServer((req, res) => {
    void handle(req, res).catch((e: unknown) => sendError(res, e));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://console');
    const path = url.pathname;
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    if (!hostOk(req)) return sendJson(res, 421, { error: { code: 'HOMEOSTAT_ERR_USAGE', message: 'the console answers only to a loopback host name' } });
    const qToken = url.searchParams.get('token');
    if (opts.token && qToken !== null && req.method === 'GET' && path === '/') {
      if (!same(qToken, opts.token)) return sendJson(res, 401, { error: { code: 'HOMEOSTAT_ERR_USAGE', message: 'wrong console token' } });
      res.writeHead(303, { Location: '/', 'Set-Cookie': `${COOKIE}=${encodeURIComponent(qToken)}; HttpOnly; SameSite=Strict; Path=/` }).end();
      return;
    }
    if (!authorized(req)) {
      res.setHeader('WWW-Authenticate', 'Bearer realm="homeostat console"');
      return sendJson(res, 401, { error: { code: 'HOMEOSTAT_ERR_USAGE', message: 'this console needs its token: open /?token=<token> once, or send Authorization: Bearer <token>' } });
    }
    if (req.method === 'GET' || req.method === 'HEAD') {
      if (path === '/' || path === '/index.html') {
        res.writeHead(200, { 'Content-Type': TYPES['.html'], 'Content-Security-Policy': csp, 'Cache-Control': 'no-store' });
        return void res.end(html);
      }
      const f = files.get(path);
      if (f) {
        res.writeHead(200, { 'Content-Type': f.type, 'Cache-Control': path.startsWith('/vendor/') ? 'max-age=86400' : 'no-cache' });
        return void res.end(f.body);
      }
      if (path === '/favicon.ico') return void res.writeHead(204).end();
      if (path === '/api/live') return live.attach(res);
      if (path === '/api/status') return sendJson(res, 200, await api.status());
      if (path === '/api/incidents') return sendJson(res, 200, await api.incidents());
      if (path === '/api/experiments') return sendJson(res, 200, api.experiments());
      const trace = /^\/api\/incidents\/([A-Za-z0-9_-]{1,80})\/trace$/.exec(path);
      if (trace) return sendJson(res, 200, await api.trace(trace[1]));
      return sendJson(res, 404, { error: { code: 'HOMEOSTAT_ERR_NOT_FOUND', message: `no ${path}` } });
    }
    if (req.method === 'POST') {
      // a cross-site form cannot send JSON, and the origin must be the console's own
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== `http://${req.headers.host}` && origin !== `https://${req.headers.host}`) {
        return sendJson(res, 403, { error: { code: 'HOMEOSTAT_ERR_USAGE', message: 'cross-origin request refused' } });
      }
      if (!/^application\/json\b/.test(req.headers['content-type'] ?? '')) return sendJson(res, 415, { error: { code: 'HOMEOSTAT_ERR_USAGE', message: 'expected Content-Type: application/json' } });
      let body: unknown;
      try {
        body = JSON.parse((await readBody(req)) || '{}');
      } catch {
        return sendJson(res, 400, { error: { code: 'HOMEOSTAT_ERR_USAGE', message: 'the body is not JSON' } });
      }
      if (path === '/api/approve') return sendJson(res, 200, await api.decide('approve', body));
      if (path === '/api/deny') return sendJson(res, 200, await api.decide('deny', body));
      if (path === '/api/chat') return sendJson(res, 200, await api.chat(body));
      if (path === '/api/workflows') return sendJson(res, 200, await api.startWorkflow(body));
      const release = /^\/api\/guests\/(\d{3,9})\/release$/.exec(path);
      if (release) return sendJson(res, 200, await api.release(Number(release[1])));
      return sendJson(res, 404, { error: { code: 'HOMEOSTAT_ERR_NOT_FOUND', message: `no ${path}` } });
    }
    res.writeHead(405, { Allow: 'GET, HEAD, POST' }).end();
  }

  await listen(server, opts.port, host, '--console-port');
  const port = (server.address() as AddressInfo).port;
  opts.log.info({ port, host, token: Boolean(opts.token) }, 'console listening');
  return {
    url: `http://${urlHost(host)}:${port}/`,
    port,
    async close() {
      await live.stop();
      await closeServer(server);
    },
  };
}

function same(a: string, b: string): boolean {
  const x = createHash('sha256').update(a).digest();
  const y = createHash('sha256').update(b).digest();
  return timingSafeEqual(x, y);
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return void res.end();
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(text);
}

function sendError(res: ServerResponse, e: unknown): void {
  const code = e instanceof HomeostatError ? e.code : 'HOMEOSTAT_ERR_INTERNAL';
  const status = isHomeostatError(e, 'HOMEOSTAT_ERR_NOT_FOUND') ? 404
    : code === 'HOMEOSTAT_ERR_USAGE' || code === 'HOMEOSTAT_ERR_POLICY_DENIED' || code === 'HOMEOSTAT_ERR_NOT_CONFIRMED' ? 400
      : code === 'HOMEOSTAT_ERR_TIMEOUT' ? 504 : 500;
  sendJson(res, status, { error: { code, message: describeError(e) } });
}
