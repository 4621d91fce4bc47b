// Waiting: the one cancellable sleep and the one backoff-with-jitter every retry loop uses
// (bus connect, JetStream setup, persisted publish, PVE calls, action attempts, consumer naks).
import { setTimeout as timeout } from 'node:timers/promises';

/** Wait `ms`. An aborted `signal` rejects with the signal's reason (not a generic AbortError), so
 *  callers see why they were stopped; callers that poll and check the signal themselves end the
 *  wait quietly with `.catch(() => undefined)`. */
export async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) throw signal.reason;
  try {
    await timeout(Math.max(0, ms), undefined, signal ? { signal } : undefined);
  } catch (e) {
    throw signal?.aborted ? signal.reason : e;
  }
}

export interface Backoff {
  /** First wait; doubles per failure up to `maxMs`. */
  baseMs: number;
  maxMs: number;
  /** Share of each step drawn at random (default 0.5: 50–100 % of the step), so a fleet of agents
   *  does not retry in lockstep. */
  jitter?: number;
}

/** Wait after the `failures`-th failure (1 = first): exponential, capped, jittered. */
export function backoffMs(failures: number, b: Backoff, random: () => number = Math.random): number {
  const step = Math.min(b.maxMs, b.baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(step * (1 - (b.jitter ?? 0.5) * random()));
}

export interface RetryOptions extends Backoff {
  /** Total attempts (default: until `retryable` says no). */
  attempts?: number;
  /** Whether a failure is worth another attempt (default: yes). */
  retryable?: (err: unknown, attempt: number) => boolean;
  /** Told before each wait (for logging). */
  onRetry?: (err: unknown, attempt: number, waitMs: number) => void;
  /** Ends the loop at once, rejecting with the signal's reason. */
  signal?: AbortSignal;
}

/** Run `fn` until it resolves, waiting `backoffMs` between attempts; rethrows the last failure
 *  when out of attempts or not retryable. */
export async function retry<T>(fn: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    o.signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (e) {
      o.signal?.throwIfAborted();
      if ((o.attempts !== undefined && attempt >= o.attempts) || (o.retryable && !o.retryable(e, attempt))) throw e;
      const waitMs = backoffMs(attempt, o);
      o.onRetry?.(e, attempt, waitMs);
      await sleep(waitMs, o.signal);
    }
  }
}

/** Whether `p` settles within `ms`. If it does not, the caller goes on and `p` runs on unobserved
 *  (a late rejection is swallowed); a rejection within `ms` is rethrown. For a stop that must not
 *  hang on a peer that never answers (NATS gone during shutdown). */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  const settled = p.then(() => true);
  settled.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([settled, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** A human timestamp: local time with the zone's offset, e.g. 2026-11-30 21:04:13.120 +01:00. */
export function localTime(iso: string | number | Date): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const pad = (n: number, w = 2) => String(Math.abs(n)).padStart(w, '0');
  const off = -d.getTimezoneOffset();
  const zone = `${off >= 0 ? '+' : '-'}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)} ${zone}`;
}

/** `30s`, `5m`, `2h`, `1d`, `250ms` → milliseconds; undefined when it is not one. */
export function parseDurationMs(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
  return m ? Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms']) : undefined;
}

/** Open or closed; `wait()` resolves while open, or once it opens again (a singleton whose lease
 *  is paused closes its gate: its outputs wait instead of going out). Rejects on `signal`. */
export class Gate {
  private waiters: { resolve: () => void; reject: (e: unknown) => void; signal?: AbortSignal; onAbort?: () => void }[] = [];
  private isOpen = true;

  get open(): boolean {
    return this.isOpen;
  }

  close(): void {
    this.isOpen = false;
  }

  reopen(): void {
    this.isOpen = true;
    const w = this.waiters;
    this.waiters = [];
    for (const x of w) {
      if (x.onAbort) x.signal?.removeEventListener('abort', x.onAbort);
      x.resolve();
    }
  }

  wait(signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    if (this.isOpen) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const x: (typeof this.waiters)[number] = { resolve, reject, signal };
      if (signal) {
        x.onAbort = () => {
          this.waiters = this.waiters.filter((y) => y !== x);
          reject(signal.reason as Error);
        };
        signal.addEventListener('abort', x.onAbort, { once: true });
      }
      this.waiters.push(x);
    });
  }
}
