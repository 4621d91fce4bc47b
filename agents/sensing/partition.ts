// Replicated sensing divides the nodes between its live replicas: each replica keeps a member
// record alive in the fleet-state KV, every replica computes the same assignment from the live
// members (rendezvous hashing: a replica joining or leaving moves only the nodes it gains or
// loses), and a replica polls a node only while it holds that node's lease (compare-and-set on the
// KV revision, so two replicas never hold one node). A replica that should no longer have a node
// gives its lease up; one that dies stops renewing, and its nodes are taken over once their
// leases expire (TTL 4 s, renewed every 0.5 s; the others look again the moment they run out).
import { z } from 'zod';
import type { KV } from '@nats-io/kv';
import { kvCas, kvGet, LeaseRecord, orderedConsumer, token } from '../../bus/mod.ts';
import type { Logger } from '../../core/mod.ts';

export const MemberRecord = z.object({ holder: z.string().min(1).max(200), expiresAt: z.number() });
export type MemberRecord = z.infer<typeof MemberRecord>;

export const MEMBER_PREFIX = 'lease.sensing.member.';
export const NODE_LEASE_PREFIX = 'lease.sensing.node.';
export const nodeLeaseKey = (node: string) => `${NODE_LEASE_PREFIX}${token(node)}`;
const memberKey = (holder: string) => `${MEMBER_PREFIX}${holder.replace(/[^A-Za-z0-9_-]/g, '_')}`;

export interface PartitionOptions {
  kv: KV;
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

export class NodePartition {
  private readonly held = new Map<string, Held>();
  private readonly ttl: number;
  private readonly every: number;
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;
  private memberRevision = 0;
  /** What the KV holds under the member and node-lease keys, kept current by one watch (a look
   *  then costs one write per key it changes: listing the keys each time created a consumer per
   *  look, which a cluster that just lost a server answered in seconds). */
  private readonly seenMembers = new Map<string, MemberRecord>();
  private readonly seenLeases = new Map<string, { value: LeaseRecord; revision: number }>();
  private watch?: { stop(): void };
  private watching?: Promise<void>;
  /** Live members at the last look (tests and the ready line). */
  members: string[] = [];

  private readonly known: ReadonlySet<string>;
  private readonly anchor?: string;

  constructor(private readonly o: PartitionOptions) {
    this.known = new Set(o.nodes);
    this.anchor = [...o.nodes].sort()[0];
    this.ttl = o.ttlMs ?? 4000;
    this.every = o.intervalMs ?? 500;
  }

  /** Join, take this replica's share (waits for one look), then keep looking. */
  async start(): Promise<void> {
    // one watch over both (a watch of several filters needs nats-server 2.10)
    const w = await orderedConsumer(() => this.o.kv.watch({ key: 'lease.sensing.>' }), 'a watch of the sensing leases');
    this.watch = w;
    let initial!: () => void;
    const primed = new Promise<void>((r) => (initial = r));
    this.watching = (async () => {
      for await (const e of w) {
        const put = e.operation === 'PUT' && e.value.length > 0;
        const json = put ? safeJson(new TextDecoder().decode(e.value)) : undefined;
        if (!e.key.startsWith(NODE_LEASE_PREFIX) && !e.key.startsWith(MEMBER_PREFIX)) continue;
        if (e.key.startsWith(MEMBER_PREFIX)) {
          const m = MemberRecord.safeParse(json);
          if (put && m.success) this.seenMembers.set(e.key, m.data);
          else this.seenMembers.delete(e.key);
        } else {
          const l = LeaseRecord.safeParse(json);
          if (put && l.success) this.seenLeases.set(e.key, { value: l.data, revision: e.revision });
          else this.seenLeases.delete(e.key);
        }
        if (e.delta === 0) initial();
      }
    })().catch((err: unknown) => this.o.log.warn({ err: (err as Error).message }, 'sensing partition: KV watch ended'));
    // an empty bucket section sends nothing to wait for
    await Promise.race([primed, new Promise((r) => setTimeout(r, 1000))]);
    await this.look();
    const loop = () => {
      if (this.stopped) return;
      this.running = this.look().finally(() => {
        if (!this.stopped) this.timer = setTimeout(loop, this.nextLookMs());
      });
    };
    this.timer = setTimeout(loop, this.every);
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
    for (const m of this.seenMembers.values()) consider(m.holder, m.expiresAt);
    for (const l of this.seenLeases.values()) consider(l.value.holder, l.value.expiresAt);
    return Math.max(10, next);
  }

  /** This replica may poll `node` now: it holds the lease, with a renewal's margin before expiry.
   *  A node the manifest does not list (added to the cluster since) has no lease of its own: it
   *  goes with the first listed node, so exactly one live replica reports it. */
  owns(node: string): boolean {
    const anchor = this.known.has(node) ? node : this.anchor;
    if (anchor === undefined) return this.members.length <= 1;
    const h = this.held.get(anchor);
    return h !== undefined && Date.now() < h.expiresAt - this.every;
  }

  owned(): string[] {
    return this.o.nodes.filter((n) => this.owns(n));
  }

  /** Leave: give every lease and the member record up, so the others take over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running?.catch(() => undefined);
    this.watch?.stop();
    await this.watching;
    const kv = this.o.kv;
    await Promise.all([...this.held].map(([node, h]) => kv.delete(nodeLeaseKey(node), { previousSeq: h.revision }).catch(() => undefined)));
    this.held.clear();
    if (this.memberRevision) await kv.delete(memberKey(this.o.holder), { previousSeq: this.memberRevision }).catch(() => undefined);
  }

  private async look(): Promise<void> {
    const { kv, holder } = this.o;
    try {
      const now = Date.now();
      const me: MemberRecord = { holder, expiresAt: now + this.ttl };
      const rev = await kvCas(kv, memberKey(holder), me, this.memberRevision);
      if (rev === undefined) {
        // first look after a restart with the same key, or a stale revision: overwrite
        // (a failed read leaves the record for the next look: the node leases do not wait on it)
        const cur = await kvGet(kv, memberKey(holder), MemberRecord).catch(() => null);
        if (cur !== null) this.memberRevision = (await kvCas(kv, memberKey(holder), me, cur?.revision ?? 0)) ?? 0;
      } else {
        this.memberRevision = rev;
      }
      const live = [...this.seenMembers.values()].filter((m) => m.expiresAt > now || m.holder === holder).map((m) => m.holder);
      if (!live.includes(holder)) live.push(holder);
      live.sort();
      if (live.join() !== this.members.join()) this.o.log.info({ members: live }, 'sensing replicas changed: nodes reassigned');
      this.members = live;
      const mine = assign(this.o.nodes, live);
      const gained: string[] = [];
      await Promise.all(this.o.nodes.map(async (node) => {
        const should = mine.get(node) === holder;
        const key = nodeLeaseKey(node);
        const h = this.held.get(node);
        if (!should) {
          if (h) {
            this.held.delete(node);
            await kv.delete(key, { previousSeq: h.revision }).catch(() => undefined);
          }
          return;
        }
        const t = Date.now();
        const next: LeaseRecord = { holder, expiresAt: t + this.ttl, acquiredAt: t };
        if (h) {
          const r = await kvCas(kv, key, next, h.revision);
          if (r !== undefined) this.held.set(node, { revision: r, expiresAt: next.expiresAt });
          // taken after our lease ran out; a failed write (the bucket electing a leader) keeps
          // it until then, and owns() stops the polling a renewal's margin before that
          else if (Date.now() >= h.expiresAt) this.held.delete(node);
          return;
        }
        const cur = this.seenLeases.get(key);
        if (cur && cur.value.holder !== holder && cur.value.expiresAt >= t) return; // still the previous holder's
        // a deleted lease leaves a tombstone: create() takes it over
        let r = await kvCas(kv, key, next, cur?.revision ?? 0);
        if (r === undefined) {
          // the watch can lag (its consumer is reset after the bucket's leader moved): read the
          // lease itself, and take it if it has run out at the revision read
          const fresh = await kvGet(kv, key, LeaseRecord).catch(() => null);
          if (fresh === null || (fresh && fresh.value.holder !== holder && fresh.value.expiresAt >= Date.now())) return;
          r = await kvCas(kv, key, next, fresh?.revision ?? 0);
          if (r === undefined) return;
        }
        this.held.set(node, { revision: r, expiresAt: next.expiresAt });
        gained.push(node);
      }));
      if (gained.length) {
        this.o.log.info({ nodes: gained }, 'sensing took over nodes');
        this.o.onGained?.(gained);
      }
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
