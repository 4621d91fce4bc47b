// Pure dependency-graph helpers shared by the machines and the CLI's --dry-run. Vmids are the
// node ids; an edge `a.dependsOn = [b]` means b must be up before a starts, and a must be down
// before b stops.

export interface GraphGuest {
  vmid: number;
  dependsOn: number[];
  layer?: number;
  node?: string;
}

/** Reverse edges: for each vmid, the guests that depend on it (only guests in the list). */
export function dependentsIndex(guests: readonly GraphGuest[]): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const g of guests) out[g.vmid] ??= [];
  for (const g of guests) for (const d of g.dependsOn) (out[d] ??= []).push(g.vmid);
  return out;
}

function walk(start: number, next: (v: number) => readonly number[]): number[] {
  const seen = new Set<number>();
  const stack = [...next(start)];
  while (stack.length) {
    const v = stack.pop()!;
    if (seen.has(v) || v === start) continue;
    seen.add(v);
    stack.push(...next(v));
  }
  return [...seen].sort((a, b) => a - b);
}

/** Everything that (transitively) depends on `vmid`, sorted. */
export function transitiveDependents(guests: readonly GraphGuest[], vmid: number): number[] {
  const idx = dependentsIndex(guests);
  return walk(vmid, (v) => idx[v] ?? []);
}

/** Everything `vmid` (transitively) depends on, among the listed guests, sorted. */
export function transitiveDependencies(guests: readonly GraphGuest[], vmid: number): number[] {
  const by = new Map(guests.map((g) => [g.vmid, g]));
  return walk(vmid, (v) => (by.get(v)?.dependsOn ?? []).filter((d) => by.has(d)));
}

export interface BootPlan {
  /** Wave k holds the guests whose dependencies are all in earlier waves (or already healthy). With
   *  unlimited concurrency a dependency-driven boot starts each guest no later than its wave. */
  waves: number[][];
  /** Guests that can never start here: a dependency is neither listed nor already healthy
   *  (directly or through another blocked guest). */
  blocked: { vmid: number; blockers: number[] }[];
}

/** Boot waves (Kahn levels) for `--dry-run`. Guests in `alreadyHealthy` are not planned. */
export function planBootWaves(guests: readonly GraphGuest[], alreadyHealthy: readonly number[] = []): BootPlan {
  const healthy = new Set(alreadyHealthy);
  const todo = guests.filter((g) => !healthy.has(g.vmid));
  return levels(todo, (g) => g.dependsOn.filter((d) => !healthy.has(d)));
}

/** Shutdown waves: a guest stops only after everything that depends on it is down. */
export function planShutdownWaves(guests: readonly GraphGuest[], alreadyStopped: readonly number[] = []): BootPlan {
  const stopped = new Set(alreadyStopped);
  const todo = guests.filter((g) => !stopped.has(g.vmid));
  const idx = dependentsIndex(todo);
  return levels(todo, (g) => (idx[g.vmid] ?? []).filter((d) => !stopped.has(d)));
}

function levels(todo: readonly GraphGuest[], prereqs: (g: GraphGuest) => number[]): BootPlan {
  const placed = new Set<number>();
  const waves: number[][] = [];
  let rest = [...todo];
  for (;;) {
    const wave = rest.filter((g) => prereqs(g).every((d) => placed.has(d))).map((g) => g.vmid).sort((a, b) => a - b);
    if (!wave.length) break;
    wave.forEach((v) => placed.add(v));
    waves.push(wave);
    rest = rest.filter((g) => !placed.has(g.vmid));
  }
  // Whatever is left waits on something unlisted, or on a cycle.
  const blocked = rest
    .map((g) => ({ vmid: g.vmid, blockers: prereqs(g).filter((d) => !placed.has(d)).sort((x, y) => x - y) }))
    .sort((a, b) => a.vmid - b.vmid);
  return { waves, blocked };
}

/** Longest remaining chain (sum of `weight`) from each guest to the end of the graph: the
 *  classic list-scheduling priority that keeps wall time close to the critical path. */
export function downstreamRank(guests: readonly GraphGuest[], weight: (vmid: number) => number): Record<string, number> {
  const idx = dependentsIndex(guests);
  const memo: Record<string, number> = {};
  const onPath = new Set<number>();
  const rank = (v: number): number => {
    if (memo[v] !== undefined) return memo[v];
    if (onPath.has(v)) return 0; // a cycle; the machines hold such guests rather than loop
    onPath.add(v);
    const r = weight(v) + Math.max(0, ...(idx[v] ?? []).map(rank));
    onPath.delete(v);
    return (memo[v] = r);
  };
  for (const g of guests) rank(g.vmid);
  return memo;
}
