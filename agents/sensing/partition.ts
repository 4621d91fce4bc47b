// Replicated sensing divides the nodes between its live replicas: each replica keeps a member
// record alive in the lease stores, every replica computes the same assignment from the live
// members (rendezvous hashing: a replica joining or leaving moves only the nodes it gains or
// loses), and a replica polls a node only while it holds that node's lease in a majority of the
// stores (compare-and-set on each store's KV revision: a lease is one holder's in a store, so two
// replicas never hold a majority at once). A replica that should no longer have a node gives its
// lease up; one that dies stops renewing, and its nodes are taken over once their leases expire
// (TTL 3 s, renewed every 0.5 s; the others look again the moment they run out).
// The stores (bus/jetstream.ts, openLeaseStores) are three single-replica KV buckets, one per
// nats-server on a cluster (one bucket on a single server). In fleet-state (replicated), no lease
// could be written while its stream elected a leader: 4–9 s in nats-server 2.9 when the server
// leading it dies, more on a loaded host; the live replicas' own leases ran out meanwhile, and a
// replica that died with that server was taken over after 6.4–8.4 s (bench/scale). A single-replica
// store has no election: with any one server lost, the other two answer at once and make the
// majority. Each store is looked after on its own, so one that does not answer (its server dead:
// a request waits for its timeout) holds no other back. Two replicas polling one node for a
// moment is harmless (analysis applies a report once and ignores older ones), none polling it is
// not: that lasts at most the TTL after its holder dies.
import { z } from 'zod';
import type { KV } from '@nats-io/kv';
import { kvCas, kvGet, LeaseRecord, orderedConsumer, token } from '../../bus/mod.ts';
import { sleep } from '../../core/mod.ts';
import type { Logger } from '../../core/mod.ts';

export const MemberRecord = z.object({ holder: z.string().min(1).max(200), expiresAt: z.number() });
export type MemberRecord = z.infer<typeof MemberRecord>;

export const MEMBER_PREFIX = 'lease.sensing.member.';
export const NODE_LEASE_PREFIX = 'lease.sensing.node.';
export const nodeLeaseKey = (node: string) => `${NODE_LEASE_PREFIX}${token(node)}`;
const memberKey = (holder: string) => `${MEMBER_PREFIX}${holder.replace(/[^A-Za-z0-9_-]/g, '_')}`;

export interface PartitionOptions {
  /** The lease stores (bus/jetstream.ts, openLeaseStores): a lease counts in a majority of them. */
  stores: readonly KV[];
  /** This replica (host:pid). */
  holder: string;
  nodes: readonly string[];
  log: Logger;
  ttlMs?: number;
  intervalMs?: number;
  /** Told when this replica gains nodes (it must re-read what the previous holder reported). */
  onGained?: (nodes: string[]) => void;
}

/** FNV-1a: the rendezvous weight of (node, member). */
function weight(node: string, member: string): number {
  let h = 0x811c9dc5;
  const s = `${node}|${member}`;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** Which live member each node belongs to: the same answer on every replica that sees the same members. */
export function assign(nodes: readonly string[], members: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  if (!members.length) return out;
  for (const n of nodes) {
    let best = members[0];
    for (const m of members) if (weight(n, m) > weight(n, best) || (weight(n, m) === weight(n, best) && m < best)) best = m;
    out.set(n, best);
  }
  return out;
}

interface Held {
  revision: number;
  expiresAt: number;
}

/** One lease store: what this replica holds in it, and what it holds (kept current by one watch). */
interface Store {
  kv: KV;
  held: Map<string, Held>;
  memberRevision: number;
  /** Its member and node-lease keys, kept current by one watch (a look then costs one write per
   *  key it changes: listing the keys each time created a consumer per look, which a cluster that
   *  just lost a server answered in seconds). */
  members: Map<string, MemberRecord>;
  leases: Map<string, { value: LeaseRecord; revision: number }>;
  /** This replica's requests to it for the current look, if they have not come back yet. */
  busy?: Promise<void>;
  watch?: { stop(): void };
}

/** The holder of each node's lease in a majority of `stores` (absent: no one holds it). Answers
 *  as soon as the stores that answered name a holder for every node: a store whose server is
 *  down answers nothing, and waiting for its timeout made each read that much late. */
export async function readNodeLeases(stores: readonly KV[], nodes: readonly string[]): Promise<Map<string, string>> {
  const quorum = Math.floor(stores.length / 2) + 1;
  const now = Date.now();
  const votes: (string | undefined)[][] = [];
  const decide = () => {
    const out = new Map<string, string>();
    nodes.forEach((n, i) => {
      const count = new Map<string, number>();
      for (const v of votes) if (v[i] !== undefined) count.set(v[i]!, (count.get(v[i]!) ?? 0) + 1);
      for (const [holder, c] of count) if (c >= quorum) out.set(n, holder);
    });
    return out;
  };
  return new Promise((resolve) => {
    let answered = 0;
    for (const kv of stores) {
      void Promise.all(nodes.map(async (n) => {
        const l = await kvGet(kv, nodeLeaseKey(n), LeaseRecord).catch(() => undefined);
        return l && l.value.expiresAt > now ? l.value.holder : undefined;
      })).then((v) => {
        votes.push(v);
        const out = decide();
        if (++answered === stores.length || out.size === nodes.length) resolve(out);
      });
    }
  });
}

export class NodePartition {
  private readonly stores: Store[];
  private readonly quorum: number;
  private readonly ttl: number;
  private readonly every: number;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;
  private watching: Promise<void>[] = [];
  /** Nodes held by a majority at the last count (what is new in the next one was gained). */
  private counted = new Set<string>();
  /** Live members at the last look (tests and the ready line). */
  members: string[] = [];

  private readonly known: ReadonlySet<string>;
  private readonly anchor?: string;

  constructor(private readonly o: PartitionOptions) {
    if (!o.stores.length) throw new Error('sensing partition: no lease store');
    this.stores = o.stores.map((kv) => ({ kv, held: new Map(), memberRevision: 0, members: new Map(), leases: new Map() }));
    this.quorum = Math.floor(o.stores.length / 2) + 1;
    this.known = new Set(o.nodes);
    this.anchor = [...o.nodes].sort()[0];
    // 3 s: a dead replica's nodes are polled again 3–3.5 s after its last renewal. Shorter would
    // be no less safe (a replica that misses its renewals for that long polls nothing anyway,
    // and two replicas polling one node for a moment is harmless), only more rebalancing on a
    // host whose event loops stall; with 4 s the takeover measured 4.5–5.4 s at load 3–4.
    this.ttl = o.ttlMs ?? 3000;
    this.every = o.intervalMs ?? 500;
  }

  /** Join, take this replica's share (waits for one look), then keep looking. */
  async start(): Promise<void> {
    const primed = this.stores.map((s) => new Promise<void>((r) => this.watching.push(this.watchStore(s, r))));
    // an empty bucket section sends nothing to wait for; a store whose server is down, nothing either
    await Promise.race([Promise.all(primed), sleep(1000)]);
    await this.look();
    const loop = () => {
      if (this.stopped) return;
      this.running = this.look().finally(() => {
        if (!this.stopped) this.timer = setTimeout(loop, this.nextLookMs());
      });
    };
    this.timer = setTimeout(loop, this.every);
  }

  /** One watch over the store's member and node-lease keys (a watch of several filters needs
   *  nats-server 2.10), made again if it ends while the partition runs (its server was away). */
  private async watchStore(s: Store, primed: () => void): Promise<void> {
    while (!this.stopped) {
      try {
        const w = await orderedConsumer(() => s.kv.watch({ key: 'lease.sensing.>' }), 'a watch of the sensing leases');
        s.watch = w;
        if (this.stopped) w.stop();
        for await (const e of w) {
          const put = e.operation === 'PUT' && e.value.length > 0;
          const json = put ? safeJson(new TextDecoder().decode(e.value)) : undefined;
          if (e.key.startsWith(MEMBER_PREFIX)) {
            const m = MemberRecord.safeParse(json);
            if (put && m.success) s.members.set(e.key, m.data);
            else s.members.delete(e.key);
          } else if (e.key.startsWith(NODE_LEASE_PREFIX)) {
            const l = LeaseRecord.safeParse(json);
            if (put && l.success) s.leases.set(e.key, { value: l.data, revision: e.revision });
            else s.leases.delete(e.key);
          }
          if (e.delta === 0) primed();
        }
      } catch (err) {
        this.o.log.debug({ err: (err as Error).message }, 'sensing partition: a lease store\'s watch ended; making it again');
      }
      if (!this.stopped) await sleep(this.every);
    }
  }

  /** The next look: in `every` ms, or just after another replica's member record or node lease
   *  runs out if that is sooner. A live replica renews each look, so its records stay a TTL
   *  ahead; one that died is taken over on the ms its records expire, not up to a look later. */
  private nextLookMs(): number {
    const now = Date.now();
    let next = this.every;
    const consider = (holder: string, expiresAt: number) => {
      if (holder !== this.o.holder && expiresAt >= now) next = Math.min(next, expiresAt - now + 1);
    };
    for (const s of this.stores) {
      for (const m of s.members.values()) consider(m.holder, m.expiresAt);
      for (const l of s.leases.values()) consider(l.value.holder, l.value.expiresAt);
    }
    return Math.max(10, next);
  }

  /** How many stores hold `node`'s lease for this replica until at least `until`. */
  private votes(node: string, until: number): number {
    let n = 0;
    for (const s of this.stores) {
      const h = s.held.get(node);
      if (h !== undefined && until < h.expiresAt) n++;
    }
    return n;
  }

  /** This replica may poll `node` now: it holds the lease in a majority of the stores, with a
   *  renewal's margin before expiry. A node the manifest does not list (added to the cluster
   *  since) has no lease of its own: it goes with the first listed node, so exactly one live
   *  replica reports it. */
  owns(node: string): boolean {
    const anchor = this.known.has(node) ? node : this.anchor;
    if (anchor === undefined) return this.members.length <= 1;
    return this.votes(anchor, Date.now() + this.every) >= this.quorum;
  }

  owned(): string[] {
    return this.o.nodes.filter((n) => this.owns(n));
  }

  /** Leave: give every lease and the member record up, so the others take over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
    await Promise.all(this.stores.map((s) => s.busy ?? Promise.resolve()));
    for (const s of this.stores) s.watch?.stop();
    await Promise.all(this.watching);
    await Promise.all(this.stores.map(async (s) => {
      await Promise.all([...s.held].map(([node, h]) => s.kv.delete(nodeLeaseKey(node), { previousSeq: h.revision }).catch(() => undefined)));
      s.held.clear();
      if (s.memberRevision) await s.kv.delete(memberKey(this.o.holder), { previousSeq: s.memberRevision }).catch(() => undefined);
    }));
  }

  /** Which live member each node belongs to, from the member records every store holds. */
  private assignment(now: number): Map<string, string> {
    const { holder } = this.o;
    const live = new Set([holder]);
    for (const s of this.stores) for (const m of s.members.values()) if (m.expiresAt > now) live.add(m.holder);
    const sorted = [...live].sort();
    if (sorted.join() !== this.members.join()) this.o.log.info({ members: sorted }, 'sensing replicas changed: nodes reassigned');
    this.members = sorted;
    return assign(this.o.nodes, sorted);
  }

  private async look(): Promise<void> {
    const mine = this.assignment(Date.now());
    const started: Promise<void>[] = [];
    for (const s of this.stores) {
      // still waiting on the previous look's requests (its server away): leave it to those
      if (s.busy) continue;
      const p = this.lookIn(s, mine).finally(() => {
        s.busy = undefined;
        this.count();
      });
      s.busy = p;
      started.push(p);
    }
    // the stores that answer make the majority: one that does not holds this look up a look's time at most
    await Promise.race([Promise.all(started), sleep(this.every)]);
  }

  /** Who holds what now: the nodes this replica has just come to hold by a majority are gained. */
  private count(): void {
    const now = Date.now();
    const held = new Set(this.o.nodes.filter((n) => this.votes(n, now) >= this.quorum));
    const gained = [...held].filter((n) => !this.counted.has(n));
    this.counted = held;
    if (gained.length && !this.stopped) {
      this.o.log.info({ nodes: gained }, 'sensing took over nodes');
      this.o.onGained?.(gained);
    }
  }

  /** One store's part of a look: renew the member record, then take, keep or give up each lease. */
  private async lookIn(s: Store, mine: Map<string, string>): Promise<void> {
    const { holder } = this.o;
    const kv = s.kv;
    try {
      const me: MemberRecord = { holder, expiresAt: Date.now() + this.ttl };
      const rev = await kvCas(kv, memberKey(holder), me, s.memberRevision);
      if (rev === undefined) {
        // first look after a restart with the same key, or a stale revision: overwrite
        // (a failed read leaves the record for the next look: the node leases do not wait on it)
        const cur = await kvGet(kv, memberKey(holder), MemberRecord).catch(() => null);
        if (cur !== null) s.memberRevision = (await kvCas(kv, memberKey(holder), me, cur?.revision ?? 0)) ?? 0;
      } else {
        s.memberRevision = rev;
      }
      await Promise.all(this.o.nodes.map(async (node) => {
        const should = mine.get(node) === holder;
        const key = nodeLeaseKey(node);
        const h = s.held.get(node);
        if (!should) {
          if (h) {
            s.held.delete(node);
            await kv.delete(key, { previousSeq: h.revision }).catch(() => undefined);
          }
          return;
        }
        const t = Date.now();
        const next: LeaseRecord = { holder, expiresAt: t + this.ttl, acquiredAt: t };
        if (h) {
          const r = await kvCas(kv, key, next, h.revision);
          if (r !== undefined) s.held.set(node, { revision: r, expiresAt: next.expiresAt });
          // taken after our lease ran out; a failed write (the store's server away) keeps it
          // until then, and owns() stops counting it a renewal's margin before that
          else if (Date.now() >= h.expiresAt) s.held.delete(node);
          return;
        }
        const cur = s.leases.get(key);
        if (cur && cur.value.holder !== holder && cur.value.expiresAt >= t) return; // still the previous holder's
        // a deleted lease leaves a tombstone: create() takes it over
        let r = await kvCas(kv, key, next, cur?.revision ?? 0);
        if (r === undefined) {
          // the watch can lag (made again after its server was away): read the lease itself,
          // and take it if it has run out at the revision read
          const fresh = await kvGet(kv, key, LeaseRecord).catch(() => null);
          if (fresh === null || (fresh && fresh.value.holder !== holder && fresh.value.expiresAt >= Date.now())) return;
          r = await kvCas(kv, key, next, fresh?.revision ?? 0);
          if (r === undefined) return;
        }
        s.held.set(node, { revision: r, expiresAt: next.expiresAt });
      }));
    } catch (e) {
      // NATS away for a moment: the leases run out on their own if this lasts
      this.o.log.debug({ err: (e as Error).message }, 'sensing partition: look failed');
    }
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
