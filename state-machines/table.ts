// The guest table of the boot pipeline and the shutdown machine, kept so that one pure step costs
// what it changes. The machine's context holds plain JSON (snapshots persist it); a step works on a
// `TableDraft`, which copies a bucket, a guest or a node's ready queue the first time it writes to
// it and shares everything else with the previous context.

/** Guests live in this many buckets (by vmid): a step copies the buckets it touches, not the fleet. */
const BUCKETS = 256;

export type Buckets<G> = Record<string, G>[];

const bucketOf = (vmid: number) => ((vmid % BUCKETS) + BUCKETS) % BUCKETS;
/** Not the bare vmid: a bucket keyed by sparse integers (5, 261, 517, …) is a dictionary-mode
 *  elements store in V8, and copying one costs ~20x more than copying string keys (measured:
 *  62 µs against 3 µs for 20 guests), which made copying buckets the top cost of a step. */
const keyOf = (vmid: number) => `g${vmid}`;

export function bucketsOf<G extends { vmid: number }>(guests: Iterable<G>): Buckets<G> {
  const b: Buckets<G> = Array.from({ length: BUCKETS }, () => ({}));
  for (const g of guests) b[bucketOf(g.vmid)][keyOf(g.vmid)] = g;
  return b;
}

export function lookup<G>(b: Buckets<G>, vmid: number): G | undefined {
  return b[bucketOf(vmid)][keyOf(vmid)];
}

export function* rows<G>(b: Buckets<G>): Generator<G> {
  for (const bucket of b) yield* Object.values(bucket);
}

/** Per node, the guests ready to go, best first by `before`. */
export function readyQueues<G extends { vmid: number; node: string }>(guests: Iterable<G>, before: (a: G, b: G) => number): Record<string, number[]> {
  const byNode: Record<string, G[]> = {};
  for (const g of guests) (byNode[g.node] ??= []).push(g);
  const out: Record<string, number[]> = {};
  for (const [node, gs] of Object.entries(byNode)) out[node] = gs.sort(before).map((g) => g.vmid);
  return out;
}

/** The counters a table keeps in step with its guests' phases (fields of the machine's context). */
export interface PhaseCounters {
  /** Guests waiting for their dependencies (boot) or dependents (shutdown), in all. */
  queued: number;
  /** Guests with a step in flight, in all and per node. */
  inFlight: number;
  busy: Record<string, number>;
  /** Guests not settled yet (queued or in flight), in all and per layer. */
  unsettled: number;
  open: Record<string, number>;
}

/** What a machine's phases mean to the bookkeeping. */
export interface PhaseRules<G, Ph> {
  /** The phase of a guest waiting its turn: with `waiting === 0` it sits in its node's ready queue. */
  queued: Ph;
  inFlight(ph: Ph): boolean;
  /** Entering this phase lets the guests from `unblocks` count one wait fewer. */
  releases(ph: Ph): boolean;
  unblocks(g: G): readonly number[];
}

type TableGuest<Ph = string> = { vmid: number; node: string; layer: number; phase: Ph; waiting: number };

export class TableDraft<G extends TableGuest<Ph>, Ph extends string = G['phase']> {
  readonly buckets: Buckets<G>;
  readonly ready: Record<string, number[]>;
  /** Nodes whose queue grew or whose slots freed: where a scheduler looks. */
  readonly dirty = new Set<string>();
  private readonly copiedBuckets = new Set<number>();
  private readonly copiedGuests = new Set<number>();
  private readonly copiedQueues = new Set<string>();

  /** Layers that settled in this step. */
  readonly closed = new Set<number>();

  constructor(buckets: Buckets<G>, ready: Record<string, number[]>, private readonly before: (a: G, b: G) => number, private readonly rules: PhaseRules<G, Ph>) {
    this.buckets = [...buckets];
    this.ready = { ...ready };
  }

  get(vmid: number): G | undefined {
    return lookup(this.buckets, vmid);
  }

  /** A writable copy of the guest, made once per step. */
  edit(vmid: number): G {
    const b = bucketOf(vmid);
    if (!this.copiedBuckets.has(b)) {
      this.buckets[b] = { ...this.buckets[b] };
      this.copiedBuckets.add(b);
    }
    const k = keyOf(vmid);
    if (!this.copiedGuests.has(vmid)) {
      this.buckets[b][k] = { ...this.buckets[b][k] };
      this.copiedGuests.add(vmid);
    }
    return this.buckets[b][k];
  }

  private queue(node: string): number[] {
    if (!this.copiedQueues.has(node)) {
      this.ready[node] = [...(this.ready[node] ?? [])];
      this.copiedQueues.add(node);
    }
    return this.ready[node];
  }

  /** Into its node's ready queue, in `before` order. */
  enqueue(g: G): void {
    const q = this.queue(g.node);
    let lo = 0;
    let hi = q.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.before(this.get(q[mid])!, g) < 0) lo = mid + 1;
      else hi = mid;
    }
    q.splice(lo, 0, g.vmid);
    this.dirty.add(g.node);
  }

  dequeue(g: G): void {
    const q = this.ready[g.node];
    const i = q ? q.indexOf(g.vmid) : -1;
    if (i >= 0) this.queue(g.node).splice(i, 1);
  }

  /** The best ready guests of every dirty node, up to its free slots, best first overall. */
  picks(free: (node: string) => number): G[] {
    const out: G[] = [];
    for (const node of this.dirty) for (const v of (this.ready[node] ?? []).slice(0, Math.max(0, free(node)))) out.push(this.get(v)!);
    this.dirty.clear();
    return out.sort(this.before);
  }

  /** Every phase change goes through here, so `c`, the queues and the waits stay in step. */
  setPhase(c: PhaseCounters, vmid: number, phase: Ph): G {
    const g = this.edit(vmid);
    const from = g.phase;
    if (from === phase) return g;
    const { queued, inFlight, releases, unblocks } = this.rules;
    const open = (ph: Ph) => ph === queued || inFlight(ph);
    if (from === queued) {
      c.queued--;
      if (g.waiting === 0) this.dequeue(g);
    }
    if (inFlight(from)) {
      c.busy[g.node]--;
      c.inFlight--;
      this.dirty.add(g.node);
    }
    g.phase = phase;
    if (phase === queued) {
      c.queued++;
      if (g.waiting === 0) this.enqueue(g);
    }
    if (inFlight(phase)) {
      c.busy[g.node] = (c.busy[g.node] ?? 0) + 1;
      c.inFlight++;
    }
    if (open(from) && !open(phase)) {
      c.unsettled--;
      if (--c.open[g.layer] === 0) this.closed.add(g.layer);
    }
    if (releases(phase)) {
      for (const v of unblocks(g)) {
        if (!this.get(v)) continue;
        const d = this.edit(v);
        d.waiting--;
        if (d.phase === queued && d.waiting === 0) this.enqueue(d);
      }
    }
    return g;
  }
}
