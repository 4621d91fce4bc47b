// PVE tasks: the UPID format, and waiting for a task to finish (poll with backoff, deadline, abort).
import { HomeostatError, isHomeostatError, sleep } from '../core/mod.ts';
import { oneLine } from './pve-errors.ts';
import type { PveTaskStatus, WaitOptions } from './pve-types.ts';

export interface Upid {
  node: string;
  pid: number;
  pstart: number;
  /** Unix seconds. */
  starttime: number;
  /** e.g. vzstart, qmstart, vzshutdown, qmigrate. */
  type: string;
  /** Usually the vmid. */
  id: string;
  user: string;
}

// UPID:$node:$pid(hex8):$pstart(hex8):$starttime(hex8):$type:$id:$user:  (the user may contain '!')
const UPID = /^UPID:([a-zA-Z0-9][a-zA-Z0-9.-]*):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:]*):([^:]*):([^:]+):$/;

/** Parses a task id; throws HOMEOSTAT_ERR_PVE_BAD_REQUEST when it is not one. */
export function parseUpid(upid: string): Upid {
  const m = UPID.exec(upid);
  if (!m) throw new HomeostatError('HOMEOSTAT_ERR_PVE_BAD_REQUEST', `not a PVE task id (UPID:node:pid:pstart:starttime:type:id:user:): ${JSON.stringify(oneLine(String(upid), 120))}`);
  return { node: m[1], pid: parseInt(m[2], 16), pstart: parseInt(m[3], 16), starttime: parseInt(m[4], 16), type: m[5], id: m[6], user: m[7] };
}

/** The node a task runs on, which is where its status must be asked. */
export function upidNode(upid: string): string {
  return parseUpid(upid).node;
}

export interface TaskSource {
  status(signal: AbortSignal): Promise<PveTaskStatus>;
  /** The log's last lines, for the failure message; may fail (the message then says so). */
  lastLogLines(count: number): Promise<string[]>;
}

const DEFAULT_TIMEOUT_MS = 300_000;
const MAX_POLL_MS = 1000;

/**
 * Polls until the task stops. Resolves with the final status when exitstatus is OK; otherwise
 * HOMEOSTAT_ERR_PVE_TASK_FAILED with exitstatus and the last log lines; HOMEOSTAT_ERR_PVE_TIMEOUT
 * after `timeoutMs`; the signal's reason when `signal` aborts. A status poll that fails with
 * UNAVAILABLE/TIMEOUT (after the client's own retries) does not end the wait: the task keeps
 * running on PVE, and the deadline decides.
 */
export async function waitForTaskEnd(upid: string, src: TaskSource, opts: WaitOptions = {}): Promise<PveTaskStatus> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let pollMs = opts.pollMs ?? 250;
  let lastError: HomeostatError | undefined;
  let last: PveTaskStatus | undefined;
  const deadline = new AbortController();
  const timer = setTimeout(() => {
    const seen = last ? ` (last status ${last.status})` : lastError ? ` (last poll: ${lastError.message})` : '';
    deadline.abort(new HomeostatError('HOMEOSTAT_ERR_PVE_TIMEOUT', `task ${upid} did not finish within ${timeoutMs} ms${seen}`, { cause: lastError }));
  }, timeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, deadline.signal]) : deadline.signal;
  try {
    for (;;) {
      signal.throwIfAborted();
      try {
        last = await src.status(signal);
        lastError = undefined;
      } catch (e) {
        signal.throwIfAborted();
        if (!isHomeostatError(e, 'HOMEOSTAT_ERR_PVE_UNAVAILABLE') && !isHomeostatError(e, 'HOMEOSTAT_ERR_PVE_TIMEOUT')) throw e;
        lastError = e;
      }
      if (last?.status === 'stopped') {
        if (last.exitstatus === 'OK') return last;
        throw await taskFailed(upid, last, src);
      }
      await sleep(pollMs, signal);
      pollMs = Math.min(MAX_POLL_MS, Math.ceil(pollMs * 1.5));
    }
  } finally {
    clearTimeout(timer);
  }
}

async function taskFailed(upid: string, st: PveTaskStatus, src: TaskSource): Promise<HomeostatError> {
  let log: string;
  try {
    const lines = (await src.lastLogLines(3)).map((l) => oneLine(l, 160)).filter(Boolean);
    log = lines.length ? lines.join(' | ') : '(empty)';
  } catch (e) {
    log = `(unavailable: ${isHomeostatError(e) ? e.code : String(e)})`;
  }
  const what = [st.type, st.id].filter(Boolean).join(' ');
  return new HomeostatError('HOMEOSTAT_ERR_PVE_TASK_FAILED', `task ${what} on ${st.node} failed: ${oneLine(st.exitstatus ?? 'no exit status')}; last log: ${log} (${upid})`);
}
