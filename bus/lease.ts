// A lease in a KV bucket (key `lease.<name>`): one holder at a time for a named role (the active replica of a
// singleton agent). Compare-and-set on the KV revision, so two replicas can never both hold it;
// the holder renews well inside the TTL, and a holder that stops renewing (killed, cut off) is
// taken over once its lease has expired.
//
// A holder that cannot renew (a NATS cluster electing the bucket's leader takes 4-30 s, longer
// than any useful TTL) does not give up: it *pauses* (state `paused`: it must stop acting, i.e.
// hold its outputs) half a TTL before its expiry, keeps its state and process, and keeps trying
// to renew at the revision it last wrote. That compare-and-set succeeds only if nobody wrote the
// record since, i.e. nobody else held the lease meanwhile: then it is `active` again and carries
// on where it was, without a rebuild. If another holder wrote it, the lease is `lost` (final):
// the caller starts over as a standby and re-syncs when it holds the lease again. A standby takes
// an expired lease only a grace after its expiry and only once a second look, an interval after
// the first, finds it still unrenewed: the paused holder, which tries more often, wins it back
// after an election, however long that took. Two holders are never active at once (clocks of one
// host, or NTP-synced hosts); a write already sent when its holder paused can still land up to
// half a TTL later, before the lease expires for the others.
import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import { sleep } from '../core/mod.ts';
import { kvCas, kvGet } from './kv.ts';

export const LeaseRecord = z.object({ holder: z.string().min(1).max(200), expiresAt: z.number(), acquiredAt: z.number() });
export type LeaseRecord = z.infer<typeof LeaseRecord>;

export const leaseKey = (name: string) => `lease.${name}`;

export interface LeaseOptions {
  kv: KV;
  name: string;
  holder: string;
  ttlMs?: number;
  /** How often the holder renews and a waiting replica looks again. */
  intervalMs?: number;
}

export type LeaseState = 'active' | 'paused' | 'lost';

export interface HeldLease {
  /** `active`: renewed in time, act. `paused`: not renewed for half a TTL, stop acting (state kept).
   *  `lost`: another holder took it, or it was released (final). */
  readonly state: LeaseState;
  /** Resolves at the next change of `state` (at once when lost). */
  changed(): Promise<LeaseState>;
  /** Resolves when the lease is lost (taken by another holder, or released). */
  lost: Promise<void>;
  /** Give the lease up now (a clean stop lets the next replica take over at once). */
  release(): Promise<void>;
}

/** Waits until this holder has the lease (or `signal` aborts: undefined), then keeps it renewed. */
export async function acquireLease(o: LeaseOptions, signal?: AbortSignal): Promise<HeldLease | undefined> {
  const ttl = o.ttlMs ?? 3000;
  const every = o.intervalMs ?? Math.max(100, Math.floor(ttl / 4));
  /** A paused holder retries this often: sooner than a standby looks, so it wins its lease back. */
  const pausedEvery = Math.max(50, Math.floor(every / 3));
  const key = leaseKey(o.name);
  let revision = 0;
  let expiresAt = 0;
  /** Someone else's expired lease as first seen: the revision, and when. */
  let expiredSeen: { revision: number; at: number } | undefined;
  for (;;) {
    if (signal?.aborted) return undefined;
    try {
      const cur = await kvGet(o.kv, key, LeaseRecord);
      const now = Date.now();
      // someone else's expired lease is taken only when a later look, at least an interval after
      // the first, finds it still unrenewed (the same revision): a holder paused by an election
      // retries every `pausedEvery` and so gets the first chance to renew it (it needs no
      // rebuild), however long the outage was; a wall-clock grace alone is already over by then
      let take = !cur || cur.value.holder === o.holder;
      if (cur && !take && cur.value.expiresAt + every < now) {
        if (expiredSeen?.revision !== cur.revision) expiredSeen = { revision: cur.revision, at: now };
        else take = now - expiredSeen.at >= every;
      } else expiredSeen = undefined;
      if (take) {
        const next: LeaseRecord = { holder: o.holder, expiresAt: now + ttl, acquiredAt: now };
        const rev = await kvCas(o.kv, key, next, cur?.revision ?? 0);
        if (rev !== undefined) {
          revision = rev;
          expiresAt = next.expiresAt;
          // stored late (an outage held the write up): renew it at once before acting
          if (Date.now() < expiresAt - ttl / 2) break;
          continue;
        }
      }
    } catch {
      // NATS unavailable for a moment: keep trying
    }
    await sleep(every, signal).catch(() => undefined);
  }

  let state = 'active' as LeaseState;
  let wake: ((s: LeaseState) => void)[] = [];
  let resolveLost!: () => void;
  const lost = new Promise<void>((r) => (resolveLost = r));
  const stopRenewing = new AbortController();
  const set = (s: LeaseState) => {
    if (state === s || state === 'lost') return;
    state = s;
    const w = wake;
    wake = [];
    for (const f of w) f(s);
    if (s === 'lost') {
      stopRenewing.abort();
      resolveLost();
    }
  };
  const isLost = () => state === 'lost';
  // a timer, not the loop: a renewal can hang for the request's timeout (seconds) in an election
  let pauseTimer: NodeJS.Timeout | undefined;
  const armPause = () => {
    clearTimeout(pauseTimer);
    pauseTimer = setTimeout(() => set('paused'), Math.max(0, expiresAt - ttl / 2 - Date.now()));
    pauseTimer.unref?.();
  };
  stopRenewing.signal.addEventListener('abort', () => clearTimeout(pauseTimer), { once: true });
  armPause();
  void (async () => {
    while (!isLost()) {
      await sleep(state === 'paused' ? pausedEvery : every, stopRenewing.signal).catch(() => undefined);
      if (isLost()) return;
      const now = Date.now();
      // stop acting half a TTL before the lease expires for the others
      if (now > expiresAt - ttl / 2) set('paused');
      const next: LeaseRecord = { holder: o.holder, expiresAt: now + ttl, acquiredAt: now };
      const rev = await kvCas(o.kv, key, next, revision).catch(() => undefined);
      if (isLost()) return;
      if (rev !== undefined) {
        revision = rev;
        expiresAt = next.expiresAt;
        // renewed at the revision we wrote last: nobody held it in between. Active again only if
        // what was stored still has half its TTL to run (a write held up by the outage may be
        // stored already expired: the others could take it at once)
        if (Date.now() < expiresAt - ttl / 2) {
          armPause();
          set('active');
        }
        continue;
      }
      const cur = await kvGet(o.kv, key, LeaseRecord).catch(() => null);
      if (cur === undefined || (cur && cur.value.holder !== o.holder)) {
        // another holder wrote it (or it is gone): whatever we did meanwhile is not ours to continue
        set('lost');
      } else if (cur && cur.revision !== revision) {
        // our own renewal was stored but its ack lost (only we write our holder name, and only at
        // the revision we wrote: nobody else held it in between)
        revision = cur.revision;
        expiresAt = cur.value.expiresAt;
        armPause();
      } else if (Date.now() > expiresAt - ttl / 2) {
        set('paused');
      }
    }
  })();
  return {
    get state() {
      return state;
    },
    changed: () => (state === 'lost' ? Promise.resolve(state) : new Promise<LeaseState>((r) => wake.push(r))),
    lost,
    release: async () => {
      if (state === 'lost') return;
      const rev = revision;
      set('lost');
      await o.kv.delete(key, { previousSeq: rev }).catch(() => undefined);
    },
  };
}
