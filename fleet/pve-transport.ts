// The wire under ProxmoxClient: the real proxmox-api client, given a fetch of ours (undici) that adds
// TLS trust, a timeout per attempt and a record of what the server answered. Retries, backoff and
// error mapping live here, so every method of the client gets them the same way.
//
// Retries: after 5xx/595, network errors and timeouts, never after 4xx. A read that timed out is
// tried again with twice the time (up to 60 s): a slow PVE is still an answering PVE.
// A call that changes state (POST, PUT, DELETE) is never sent again once the request may have
// reached PVE (a timeout, a connection lost mid-request): a reboot sent twice is two reboots. It
// fails with HOMEOSTAT_ERR_PVE_UNCERTAIN instead, and the caller finds out what happened (the
// guest's task list) before it calls again. It is retried only when PVE answered with an error or
// the connection was never made.
import proxmoxApi, { type Proxmox, type ProxmoxEngineOptions } from 'proxmox-api';
import { Agent, fetch as undiciFetch, type Response } from 'undici';
import { retry, type Logger } from '../core/mod.ts';
import type { PveConnection, PveRequestEvent } from './pve-config.ts';
import { classifyAttempt, toHomeostatError, type AttemptRecord, type Classified } from './pve-errors.ts';

/** The subset of RequestInit that proxmox-api hands to its fetch. */
interface EngineRequestInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}

/** A failed attempt, classified; turned into the coded error once retries are over. */
class FailedAttempt {
  readonly method: string;
  readonly path: string;
  constructor(readonly c: Classified, attempt: AttemptRecord, readonly n: number) {
    this.method = attempt.method;
    this.path = attempt.path;
  }
}

/** One attempt of one call: its own deadline, and what the server said. */
class Attempt implements AttemptRecord {
  method = 'GET';
  path = '';
  status?: number;
  statusText?: string;
  body?: string;
  networkError?: unknown;
  timedOut = false;
  private readonly ctl = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private readonly onOuterAbort: () => void;

  constructor(timeoutMs: number, private readonly dispatcher: Agent, private readonly outer?: AbortSignal) {
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.ctl.abort(new Error(`timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    this.onOuterAbort = () => this.ctl.abort(outer?.reason);
    outer?.addEventListener('abort', this.onOuterAbort, { once: true });
  }

  readonly fetch = async (url: string | URL, init?: EngineRequestInit): Promise<Response> => {
    const u = new URL(String(url));
    this.method = init?.method ?? 'GET';
    this.path = decodeURIComponent(u.pathname.replace(/^\/api2\/json/, '')) + decodeURIComponent(u.search);
    // proxmox-api repeats a failed fetch once on its own; our loop owns retries and backoff.
    if (this.networkError !== undefined) throw this.networkError;
    try {
      const res = await undiciFetch(u, { method: this.method, headers: init?.headers, body: init?.body, signal: this.ctl.signal, dispatcher: this.dispatcher });
      this.status = res.status;
      this.statusText = res.statusText;
      // proxmox-api folds the body into a message; keep it whole to map the error (e.g. 400 `errors`).
      if (res.status !== 200) this.body = await res.clone().text();
      return res;
    } catch (e) {
      this.networkError = e;
      throw e;
    }
  };

  dispose(): void {
    clearTimeout(this.timer);
    this.outer?.removeEventListener('abort', this.onOuterAbort);
  }
}

const MAX_ATTEMPT_TIMEOUT_MS = 60_000;

// The connection was never made: the request cannot have reached PVE.
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

/** Could PVE have received (and acted on) this request although we got no answer? */
function mayHaveArrived(a: AttemptRecord): boolean {
  if (a.status !== undefined && !a.timedOut) return false; // PVE answered: it said what it did
  if (a.timedOut) return true;
  for (let c = a.networkError; c instanceof Error; c = c.cause) {
    if (NOT_SENT.has(String((c as { code?: unknown }).code))) return false;
  }
  return true;
}

export class PveTransport {
  readonly origin: string;
  private readonly dispatcher: Agent;
  private readonly host: string;
  private readonly port?: number;
  private readonly schema: 'http' | 'https';

  constructor(
    private readonly conn: Readonly<PveConnection>,
    private readonly log: Logger,
    private readonly onRequest?: (e: PveRequestEvent) => void,
  ) {
    const u = new URL(conn.url);
    this.schema = u.protocol === 'https:' ? 'https' : 'http';
    this.host = u.hostname;
    this.port = u.port ? Number(u.port) : undefined;
    this.origin = u.host;
    if (this.schema === 'https' && conn.insecure) {
      // Asked for explicitly (insecure: true / PVE_INSECURE=1); said once, loudly, per client.
      const ignored = conn.caPem ? ' (the CA given with it is ignored)' : '';
      log.warn({ pveUrl: conn.url }, `TLS certificate of ${this.origin} is NOT verified (PVE_INSECURE=1)${ignored}: anyone on the path can impersonate PVE and read the API token; set PVE_CA_FILE instead`);
    }
    const tls = this.schema !== 'https' ? {} : conn.insecure ? { rejectUnauthorized: false } : conn.caPem ? { ca: conn.caPem } : {};
    this.dispatcher = new Agent({ connect: tls, keepAliveTimeout: 10_000 });
  }

  /** Runs `fn` against the PVE API with timeout, retries and coded errors. An aborted `signal`
   *  rejects with its reason, without further attempts. */
  async call<T>(fn: (api: Proxmox.Api) => Promise<T>, signal?: AbortSignal): Promise<T> {
    try {
      return await retry(async (n) => {
        const timeoutMs = this.attemptTimeoutMs(n);
        const attempt = new Attempt(timeoutMs, this.dispatcher, signal);
        const t0 = performance.now();
        let result: T | undefined;
        let failure: unknown;
        let ok = false;
        try {
          result = await fn(this.apiFor(attempt, timeoutMs));
          // proxmox-api turns a body that could not be read (our deadline hit mid-body) into `null`.
          ok = !attempt.timedOut;
        } catch (e) {
          failure = e;
        } finally {
          attempt.dispose();
        }
        signal?.throwIfAborted();
        if (ok) {
          this.onRequest?.({ method: attempt.method, path: attempt.path, attempt: n, status: attempt.status, ms: performance.now() - t0 });
          return result as T;
        }
        const c = classifyAttempt(attempt, failure, this.origin, timeoutMs);
        if (attempt.method !== 'GET' && c.retryable && mayHaveArrived(attempt)) {
          c.code = 'HOMEOSTAT_ERR_PVE_UNCERTAIN';
          c.retryable = false;
          c.detail = `${c.detail}; PVE may have run it, so it is not sent again blindly`;
        }
        this.onRequest?.({ method: attempt.method, path: attempt.path, attempt: n, status: attempt.status, error: c.code, ms: performance.now() - t0 });
        throw new FailedAttempt(c, attempt, n);
      }, {
        attempts: 1 + this.conn.retries,
        // exponential, capped, jittered to 50–100 % of the step so a fleet of agents does not retry in lockstep
        baseMs: this.conn.retryBaseMs,
        maxMs: this.conn.retryMaxMs,
        retryable: (e) => e instanceof FailedAttempt && e.c.retryable,
        onRetry: (e, n, waitMs) => {
          const f = e as FailedAttempt;
          this.log.debug({ method: f.method, path: f.path, attempt: n, waitMs, err: f.c.detail }, 'PVE call failed; retrying');
        },
        signal,
      });
    } catch (e) {
      if (e instanceof FailedAttempt) throw toHomeostatError(e.c, e.method, e.path || '(no request sent)', e.n);
      throw e;
    }
  }

  /** A read that timed out gets twice the time on its next attempt, up to 60 s (or the configured
   *  timeout, when that is longer). */
  private attemptTimeoutMs(n: number): number {
    return Math.min(this.conn.timeoutMs * 2 ** (n - 1), Math.max(this.conn.timeoutMs, MAX_ATTEMPT_TIMEOUT_MS));
  }

  // A fresh engine per attempt is cheap (a Proxy and a few fields) and binds the attempt's fetch.
  private apiFor(attempt: Attempt, timeoutMs: number): Proxmox.Api {
    return proxmoxApi({
      host: this.host,
      port: this.port,
      schema: this.schema,
      tokenID: this.conn.tokenId,
      tokenSecret: this.conn.tokenSecret,
      queryTimeout: timeoutMs + 1000,
      // proxmox-api types its fetch against its own bundled undici 6; ours is undici 7, same shape.
      fetch: attempt.fetch as unknown as ProxmoxEngineOptions['fetch'],
    });
  }

  /** Closes the kept-alive connections. */
  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}
