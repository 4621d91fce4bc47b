// The last resort of a long-running process (`up`, `agent`): Node ends a process on a promise
// rejection nobody handled, and a library's background work can reject with nobody to catch it
// (nats.js re-creating an ordered consumer while the server is away, for one). Every such
// rejection is logged as one line with its code and the process carries on: our own periodic
// tasks catch and retry on their next tick, and a rejected promise leaves no state half-changed.
// An uncaught exception can have left a callback half-way: unless it is a NATS connection error
// (the bus reconnects by itself), the process stops cleanly (exit 1) and its supervisor (up's
// agent processes, compose's restart policy) starts it again.
import type { Logger } from '../core/mod.ts';

export interface CrashGuard {
  /** Resolves with the error when the process should stop (an uncaught exception). */
  fatal: Promise<Error>;
  /** Rejections and exceptions let through so far (logged, not fatal). */
  survived(): number;
  /** Remove the handlers (tests; a process that returns from main). */
  dispose(): void;
}

/** Errors of a NATS connection that is away or slow: transient by nature, the bus reconnects. */
const TRANSIENT_NAMES = new Set(['TimeoutError', 'ConnectionError', 'ClosedConnectionError', 'NoRespondersError', 'RequestError', 'DrainingConnectionError', 'AbortError']);
const TRANSIENT_CODES = new Set(['HOMEOSTAT_ERR_NATS_UNAVAILABLE', 'HOMEOSTAT_ERR_TIMEOUT', 'TIMEOUT', 'ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ABORT_ERR']);

export function isTransient(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as { code?: unknown }).code;
  return TRANSIENT_NAMES.has(e.name) || (typeof code === 'string' && TRANSIENT_CODES.has(code));
}

/** What the one log line says about an error: its code (or class name), message, and where. */
export function errorFields(e: unknown): { code: string; err: string; at?: string } {
  if (!(e instanceof Error)) return { code: 'HOMEOSTAT_ERR_INTERNAL', err: String(e) };
  const code = (e as { code?: unknown }).code;
  const at = e.stack?.split('\n').find((l) => l.trim().startsWith('at '))?.trim().slice(3);
  return { code: typeof code === 'string' && code ? code : e.name, err: e.message, ...(at ? { at } : {}) };
}

export function guardProcess(log: Logger): CrashGuard {
  let survived = 0;
  let fail!: (e: Error) => void;
  const fatal = new Promise<Error>((resolve) => (fail = resolve));
  const onRejection = (reason: unknown) => {
    survived++;
    log.error({ ...errorFields(reason), transient: isTransient(reason) }, 'unhandled rejection (logged; still running)');
  };
  const onException = (e: Error) => {
    if (isTransient(e)) {
      survived++;
      log.error({ ...errorFields(e), transient: true }, 'uncaught NATS error (logged; still running)');
      return;
    }
    log.error(errorFields(e), 'uncaught exception: stopping');
    fail(e);
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return {
    fatal,
    survived: () => survived,
    dispose() {
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
    },
  };
}
