// Sensing's webhook receiver (node:http). Accepts Alertmanager's `POST /api/v2/alerts` and
// webhook_config notifications (on /api/v2/alerts, /webhook or /alertmanager) and publishes each
// alert on fleet.alerts.<alertname>; and PVE hookscript reports on /pve/hook, handed to sensing's
// loop. Bad input is a 400, never a crash; NATS trouble is a 503 so the sender retries.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Logger } from '../../core/mod.ts';
import { subjects, type Bus } from '../../bus/mod.ts';
import type { Fleet } from '../../fleet/manifest.ts';
import { parseAlertPayload } from './alert-payloads.ts';
import { HOOK_PATH, hookAuthorized, parseHookReport, type HookReport } from './pve-hook.ts';

const BODY_LIMIT = 1024 * 1024;
const PATHS = new Set(['/api/v2/alerts', '/api/v1/alerts', '/webhook', '/alertmanager']);

export interface HookSink {
  /** Bearer token the hookscript must send; none = open (a report only triggers a poll). */
  token?: string;
  onReport(report: HookReport): void;
}

export interface AlertReceiver {
  port: number;
  /** Alerts published since start (for tests and status). */
  received(): number;
  /** Hookscript reports accepted since start. */
  hookReports(): number;
  close(): Promise<void>;
}

function reply(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function readBody(req: IncomingMessage): Promise<Buffer | 'too-large'> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      // Over the limit: keep draining (so the client can read our 413), but stop keeping it;
      // far over the limit: hang up.
      if (size > 16 * BODY_LIMIT) req.destroy();
      else if (size <= BODY_LIMIT) chunks.push(c);
    });
    req.on('end', () => resolve(size > BODY_LIMIT ? 'too-large' : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

const NO_BODY = Symbol('no body');

/** The request's JSON body, or NO_BODY after answering 413 / 400. */
async function readJson(req: IncomingMessage, res: ServerResponse): Promise<unknown> {
  const raw = await readBody(req);
  if (raw === 'too-large') {
    reply(res, 413, { status: 'error', error: `body over ${BODY_LIMIT} bytes` });
    return NO_BODY;
  }
  try {
    return JSON.parse(raw.toString('utf8'));
  } catch (e) {
    reply(res, 400, { status: 'error', error: `malformed JSON: ${(e as Error).message.slice(0, 200)}` });
    return NO_BODY;
  }
}

export async function startAlertReceiver(opts: { bus: Bus; fleet: Fleet; log: Logger; port: number; host: string; hooks?: HookSink }): Promise<AlertReceiver> {
  const { bus, fleet, log } = opts;
  let count = 0;
  let hookCount = 0;

  const hook = async (req: IncomingMessage, res: ServerResponse, sink: HookSink) => {
    if (req.method !== 'POST') return reply(res, 405, { status: 'error', error: 'use POST' });
    if (!hookAuthorized(req.headers.authorization, sink.token)) return reply(res, 401, { status: 'error', error: 'send Authorization: Bearer <HOMEOSTAT_HOOK_TOKEN>' });
    const body = await readJson(req, res);
    if (body === NO_BODY) return;
    const parsed = parseHookReport(body, fleet);
    if (!parsed.ok) return reply(res, 400, { status: 'error', error: parsed.error });
    if (!parsed.known) return reply(res, 202, { status: 'ignored', reason: `guest ${parsed.report.vmid} is not in the fleet` });
    hookCount++;
    sink.onReport(parsed.report);
    reply(res, 202, { status: 'accepted' });
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && (path === '/-/healthy' || path === '/-/ready')) return reply(res, 200, { status: 'ok' });
    if (path === HOOK_PATH && opts.hooks) return hook(req, res, opts.hooks);
    if (!PATHS.has(path)) return reply(res, 404, { status: 'error', error: `unknown path ${path.slice(0, 100)}; POST alerts to /api/v2/alerts or /webhook` });
    if (req.method !== 'POST') return reply(res, 405, { status: 'error', error: 'use POST' });
    const body = await readJson(req, res);
    if (body === NO_BODY) return;
    const parsed = parseAlertPayload(body, fleet);
    if (!parsed.ok) {
      log.warn({ path, error: parsed.error }, 'alertmanager payload refused');
      return reply(res, 400, { status: 'error', error: parsed.error });
    }
    try {
      for (const a of parsed.alerts) {
        await bus.publish(subjects.alert(a.name), a.status === 'firing' ? 'AlertFired' : 'AlertResolved', a, { retryForMs: 5000 });
        count++;
      }
    } catch (e) {
      log.error({ err: (e as Error).message }, 'could not publish alertmanager alerts');
      return reply(res, 503, { status: 'error', error: 'the bus is unavailable; retry later' });
    }
    reply(res, 200, { status: 'success', shape: parsed.shape, published: parsed.alerts.length });
  };

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      log.error({ err: (e as Error).message }, 'alertmanager receiver failed on a request');
      reply(res, 500, { status: 'error', error: 'internal error' });
    });
  });
  server.on('clientError', (_e, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ port, host: opts.host, paths: [...PATHS] }, 'alertmanager receiver ready');
  return {
    port,
    received: () => count,
    hookReports: () => hookCount,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
