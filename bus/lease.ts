// A lease in a KV bucket (key `lease.<name>`): one holder at a time for a named role (the active replica of a
// singleton agent). Compare-and-set on the KV revision, so two replicas can never both hold it;
// the holder renews well inside the TTL, and a holder that stops renewing (killed, cut off) is
// taken over once its lease has expired. A holder that cannot renew steps down before its own
// expiry, so there is no moment with two active holders (clocks of one host, or NTP-synced hosts).
import type { KV } from '@nats-io/kv';
import { z } from 'zod';
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

export interface HeldLease {
  /** Resolves when the lease is lost (not renewed in time, or taken): the role must stop. */
  lost: Promise<void>;
  /** Give the lease up now (a clean stop lets the next replica take over at once). */
  release(): Promise<void>;
}

const sleep = (ms: number, signal?: AbortSignal) => new Promise<void>((r) => {
  const done = () => {
    clearTimeout(t);
    signal?.removeEventListener('abort', done);
    r();
  };
  const t = setTimeout(done, ms);
  signal?.addEventListener('abort', done, { once: true });
});

/** Waits until this holder has the lease (or `signal` aborts: undefined), then keeps it renewed. */
export async function acquireLease(o: LeaseOptions, signal?: AbortSignal): Promise<HeldLease | undefined> {
  const ttl = o.ttlMs ?? 3000;
  const every = o.intervalMs ?? Math.max(100, Math.floor(ttl / 4));
  const key = leaseKey(o.name);
  let revision = 0;
  let expiresAt = 0;
  for (;;) {
    if (signal?.aborted) return undefined;
    try {
      const cur = await kvGet(o.kv, key, LeaseRecord);
      const now = Date.now();
      if (!cur || cur.value.holder === o.holder || cur.value.expiresAt < now) {
        const next: LeaseRecord = { holder: o.holder, expiresAt: now + ttl, acquiredAt: now };
        const rev = await kvCas(o.kv, key, next, cur?.revision ?? 0);
        if (rev !== undefined) {
          revision = rev;
          expiresAt = next.expiresAt;
          break;
        }
      }
    } catch {
      // NATS unavailable for a moment: keep trying
    }
    await sleep(every, signal);
  }

  let resolveLost!: () => void;
  const lost = new Promise<void>((r) => (resolveLost = r));
  let held = true;
  const stopRenewing = new AbortController();
  const stepDown = () => {
    if (!held) return;
    held = false;
    stopRenewing.abort();
    resolveLost();
  };
  void (async () => {
    while (held) {
      await sleep(every, stopRenewing.signal);
      if (!held) return;
      const now = Date.now();
      // step down while the lease is still ours, a margin before it expires for the others
      if (now > expiresAt - every) {
        stepDown();
        return;
      }
      const next: LeaseRecord = { holder: o.holder, expiresAt: now + ttl, acquiredAt: now };
      const rev = await kvCas(o.kv, key, next, revision).catch(() => undefined);
      if (rev !== undefined) {
        revision = rev;
        expiresAt = next.expiresAt;
        continue;
      }
      const cur = await kvGet(o.kv, key, LeaseRecord).catch(() => undefined);
      if (cur && cur.value.holder !== o.holder) stepDown();
    }
  })();
  return {
    lost,
    release: async () => {
      if (!held) return;
      held = false;
      stopRenewing.abort();
      await o.kv.delete(key, { previousSeq: revision }).catch(() => undefined);
      resolveLost();
    },
  };
}
