// Ids: ULIDs (time-sortable, 26 chars, Crockford base32) for envelopes, incidents, workflows.
import { randomFillSync } from 'node:crypto';

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const pool = new Uint8Array(4096);
let poolAt = pool.length;

// Drawing crypto random per character costs ~30k ids/s; one pooled randomFillSync makes it ~100x
// cheaper on the hot path (every envelope gets an id).
let lastMs = -1;
let lastTime = '';
let lastIso = '';

function timePart(now: number): string {
  if (now === lastMs) return lastTime;
  let time = '';
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  lastMs = now;
  lastTime = time;
  lastIso = new Date(now).toISOString();
  return time;
}

/** ISO timestamp of the current millisecond (cached: many envelopes share one ms). */
export function nowIso(now = Date.now()): string {
  timePart(now);
  return lastIso;
}

export function newId(now = Date.now()): string {
  const time = timePart(now);
  if (poolAt + 16 > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  let rand = '';
  for (let i = 0; i < 16; i++) rand += CROCKFORD[pool[poolAt++] & 31];
  return time + rand;
}
