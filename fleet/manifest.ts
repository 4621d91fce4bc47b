// The fleet manifest: nodes, guests in dependency layers, and the policy knobs. Errors name the
// path and the problem, e.g. `guests[3].layer: expected integer >= 1`.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { HomeostatError } from '../core/mod.ts';
import { NOTIFY_DEFAULTS, NotifySpec } from './notify-targets.ts';

export const NodeSpec = z.strictObject({
  name: z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9-]{0,62}$/, 'expected a PVE node name (letters, digits, dashes)'),
  role: z.string().max(200).default(''),
  cpus: z.number().int().min(1).default(16),
  memGiB: z.number().min(1).default(64),
  /** How many guests the node may run; failover respects it. */
  capacity: z.number().int().min(0).default(100),
});
export type NodeSpec = z.infer<typeof NodeSpec>;

export const GuestSpec = z.strictObject({
  vmid: z.number().int().min(100).max(999_999_999),
  name: z.string().min(1).max(63),
  node: z.string().min(1),
  type: z.enum(['lxc', 'qemu']).default('lxc'),
  layer: z.number().int().min(1, 'expected integer >= 1'),
  /** Explicit dependencies (vmids). When absent, the guest depends on every guest one layer down. */
  dependsOn: z.array(z.number().int()).optional(),
  /** Health URL probed by sensing (HTTP GET, 2xx = healthy). Absent: the simulator's /sim/health/{vmid} when
   *  talking to the simulator, else PVE status alone. */
  health: z.string().url().optional(),
  protected: z.boolean().default(false),
  role: z.string().max(200).default(''),
  bootMs: z.number().int().min(0).max(600_000).default(3000),
  shutdownMs: z.number().int().min(0).max(600_000).default(1500),
  memMiB: z.number().int().min(16).default(1024),
  cores: z.number().int().min(1).default(1),
  diskGiB: z.number().min(1).default(8),
  /** PVE hookscript of the guest (a snippet volume, e.g. `local:snippets/homeostat-hook`); the simulator runs it. */
  hookscript: z.string().regex(/^[a-zA-Z][a-zA-Z0-9._-]*:snippets\/[^/\s]+$/, 'expected a snippet volume id, e.g. local:snippets/homeostat-hook').optional(),
});
export type GuestSpec = z.infer<typeof GuestSpec>;

export const Policies = z.strictObject({
  /** Minimum time between two remediations of the same guest. */
  cooldownMs: z.number().int().min(0).default(15_000),
  /** Flap hold-down: this many remediations in the window → stop acting, open a "flapping" incident. */
  flap: z.strictObject({ maxRemediations: z.number().int().min(1).default(3), windowMs: z.number().int().min(1000).default(600_000) }).default({ maxRemediations: 3, windowMs: 600_000 }),
  /** Global action budget per minute across the fleet. */
  budgetPerMinute: z.number().int().min(1).default(20),
  approvalTimeoutMs: z.number().int().min(1000).default(300_000),
  dryRun: z.boolean().default(false),
  allowedVerbs: z.array(z.enum(['start', 'stop', 'shutdown', 'reboot', 'migrate', 'rollback'])).default(['start', 'stop', 'shutdown', 'reboot', 'migrate', 'rollback']),
  /** How long a node's API must stay unreachable before it is fenced (10 s in the simulator, 60 s on real hardware). */
  fenceDelayMs: z.number().int().min(0).default(10_000),
  senseIntervalMs: z.number().int().min(100).default(2000),
  probeTimeoutMs: z.number().int().min(50).default(1500),
  probeConcurrency: z.number().int().min(1).default(16),
  bootConcurrencyPerNode: z.number().int().min(1).default(4),
  guestBootTimeoutMs: z.number().int().min(1000).default(60_000),
  guestRetries: z.number().int().min(0).default(1),
  shutdownTimeoutSec: z.number().int().min(1).default(60),
  /** Whether shutdown may fall back to a hard `stop` after the graceful timeout. */
  allowHardStop: z.boolean().default(true),
  alerts: z.strictObject({
    nodeDownMs: z.number().int().min(0).default(60_000),
    diskFreePct: z.number().min(0).max(100).default(10),
    cpuPct: z.number().min(0).max(100).default(85),
    memPct: z.number().min(0).max(100).default(85),
    pressureHoldMs: z.number().int().min(0).default(300_000),
    certDays: z.number().min(0).default(14),
    /** Consecutive failed probes before a running guest counts as unhealthy. */
    healthFailures: z.number().int().min(1).default(2),
  }).default({ nodeDownMs: 60_000, diskFreePct: 10, cpuPct: 85, memPct: 85, pressureHoldMs: 300_000, certDays: 14, healthFailures: 2 }),
});
export type Policies = z.infer<typeof Policies>;

export const FleetManifest = z.strictObject({
  name: z.string().default('fleet'),
  nodes: z.array(NodeSpec).min(1),
  guests: z.array(GuestSpec),
  policies: Policies.default(Policies.parse({})),
  /** Where incidents that need a human go (HOMEOSTAT_NOTIFY overrides the URLs). */
  notify: NotifySpec.default({ urls: [], ...NOTIFY_DEFAULTS }),
});
export type FleetManifest = z.infer<typeof FleetManifest>;
export type Fleet = FleetManifest & {
  byVmid: Map<number, GuestSpec>;
  /** Resolved dependencies (explicit, else the layer below). */
  deps: Map<number, number[]>;
};

function formatPath(path: PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : out ? `.${String(p)}` : String(p);
  return out || '(root)';
}

function manifestError(msg: string): HomeostatError {
  return new HomeostatError('HOMEOSTAT_ERR_MANIFEST', msg);
}

/** The keys an object at `path` may have (for "did you mean"). */
function keysAt(path: PropertyKey[]): string[] {
  const named = path.filter((p) => typeof p === 'string');
  const shape = named[0] === 'nodes' ? NodeSpec.shape : named[0] === 'guests' ? GuestSpec.shape
    : named[0] === 'notify' ? NotifySpec.shape
    : named[0] === 'policies' ? (named[1] === 'flap' || named[1] === 'alerts' ? (Policies.shape[named[1]].unwrap() as z.ZodObject).shape : Policies.shape)
      : FleetManifest.shape;
  return Object.keys(shape);
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  }
  return d[a.length][b.length];
}

/** The known key an unknown one was probably meant to be. */
export function didYouMean(key: string, known: readonly string[]): string | undefined {
  const k = key.toLowerCase().replace(/[-_]/g, '');
  const scored = known.map((c) => ({ c, d: c.toLowerCase() === k ? 0 : distance(k, c.toLowerCase()) })).sort((a, b) => a.d - b.d);
  const best = scored[0];
  if (best && best.d <= Math.max(2, Math.floor(key.length / 3))) return best.c;
  // a longer spelling of the same start (cpuPercent → cpuPct), when only one key shares it
  const prefix = (c: string) => { let i = 0; while (i < c.length && i < k.length && c[i].toLowerCase() === k[i]) i++; return i; };
  const long = known.filter((c) => prefix(c) >= 4);
  return long.length === 1 ? long[0] : undefined;
}

/** Every problem of a manifest, each naming its path: `guests[3]: unknown key "protect" — did you mean "protected"?`. */
export class ManifestError extends HomeostatError {
  constructor(readonly problems: string[], prefix = '') {
    super('HOMEOSTAT_ERR_MANIFEST', `${prefix}${problems.length > 1 ? `${problems.length} problems: ` : ''}${problems.join('; ')}`);
  }
}

function describeIssue(i: z.core.$ZodIssue): string[] {
  if (i.code === 'unrecognized_keys') {
    const known = keysAt(i.path);
    return i.keys.map((k) => {
      const hint = didYouMean(k, known);
      return `${formatPath(i.path)}: unknown key "${k}"${hint ? ` — did you mean "${hint}"?` : ` (known: ${known.join(', ')})`}`;
    });
  }
  return [`${formatPath(i.path)}: ${i.message}`];
}

/** Validate a parsed manifest (object) and resolve the dependency graph. */
export function buildFleet(input: unknown): Fleet {
  const r = FleetManifest.safeParse(input);
  if (!r.success) throw new ManifestError(r.error.issues.flatMap(describeIssue));
  const m = r.data;
  const problems: string[] = [];
  const nodes = new Set<string>();
  m.nodes.forEach((n, i) => {
    if (nodes.has(n.name)) problems.push(`nodes[${i}].name: duplicate node ${n.name}`);
    nodes.add(n.name);
  });
  const byVmid = new Map<number, GuestSpec>();
  const names = new Set<string>();
  m.guests.forEach((g, i) => {
    if (byVmid.has(g.vmid)) problems.push(`guests[${i}].vmid: duplicate vmid ${g.vmid}`);
    if (names.has(g.name)) problems.push(`guests[${i}].name: duplicate name ${g.name}`);
    if (!nodes.has(g.node)) problems.push(`guests[${i}].node: unknown node ${g.node}`);
    byVmid.set(g.vmid, g);
    names.add(g.name);
  });
  if (problems.length) throw new ManifestError(problems);
  const byLayer = new Map<number, number[]>();
  for (const g of m.guests) byLayer.set(g.layer, [...(byLayer.get(g.layer) ?? []), g.vmid]);
  const layersAsc = [...byLayer.keys()].sort((a, b) => a - b);
  const deps = new Map<number, number[]>();
  m.guests.forEach((g, i) => {
    if (g.dependsOn) {
      g.dependsOn.forEach((d, j) => {
        const dep = byVmid.get(d);
        if (!dep) throw manifestError(`guests[${i}].dependsOn[${j}]: unknown vmid ${d}`);
        if (d === g.vmid) throw manifestError(`guests[${i}].dependsOn[${j}]: a guest cannot depend on itself`);
        if (dep.layer > g.layer) {
          throw manifestError(`guests[${i}].dependsOn[${j}]: ${g.name} (layer ${g.layer}) depends on ${dep.name} in higher layer ${dep.layer}`);
        }
      });
      deps.set(g.vmid, [...new Set(g.dependsOn)]);
    } else {
      const below = layersAsc.filter((l) => l < g.layer).pop();
      deps.set(g.vmid, below === undefined ? [] : [...byLayer.get(below)!]);
    }
  });
  const cycle = findCycle(deps);
  if (cycle) {
    const i = m.guests.findIndex((g) => g.vmid === cycle[0]);
    throw manifestError(`guests[${i}].dependsOn: dependency cycle ${cycle.join(' -> ')}`);
  }
  return { ...m, byVmid, deps };
}

/** Every guest `vmid` depends on, directly or not (unordered). */
export function ancestorsOf(deps: Map<number, number[]>, vmid: number): number[] {
  const seen = new Set<number>();
  const stack = [...(deps.get(vmid) ?? [])];
  while (stack.length) {
    const v = stack.pop()!;
    if (seen.has(v)) continue;
    seen.add(v);
    stack.push(...(deps.get(v) ?? []));
  }
  return [...seen];
}

function findCycle(deps: Map<number, number[]>): number[] | undefined {
  const state = new Map<number, 1 | 2>();
  const stack: number[] = [];
  const visit = (v: number): number[] | undefined => {
    state.set(v, 1);
    stack.push(v);
    for (const d of deps.get(v) ?? []) {
      if (state.get(d) === 1) return [...stack.slice(stack.indexOf(d)), d];
      if (!state.has(d)) {
        const c = visit(d);
        if (c) return c;
      }
    }
    stack.pop();
    state.set(v, 2);
    return undefined;
  };
  for (const v of deps.keys()) {
    if (!state.has(v)) {
      const c = visit(v);
      if (c) return c;
    }
  }
  return undefined;
}

/** Load a YAML or JSON manifest file. */
export function loadFleetFile(path: string): Fleet {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw manifestError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let data: unknown;
  try {
    data = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw manifestError(`${path}: not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(e as Error).message.split('\n')[0]}`);
  }
  try {
    return buildFleet(data);
  } catch (e) {
    if (e instanceof ManifestError) throw new ManifestError(e.problems, `${path}: `);
    if (e instanceof HomeostatError) throw manifestError(`${path}: ${e.message}`);
    throw e;
  }
}

/** Dependents (reverse edges) of each guest. */
export function dependentsOf(fleet: Fleet): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const v of fleet.byVmid.keys()) out.set(v, []);
  for (const [v, ds] of fleet.deps) for (const d of ds) out.get(d)!.push(v);
  return out;
}

/** Longest chain of boot times through the dependency graph (ms): the floor for a layered boot. */
export function criticalPathMs(fleet: Fleet, only?: Set<number>): number {
  const memo = new Map<number, number>();
  const finish = (v: number): number => {
    const hit = memo.get(v);
    if (hit !== undefined) return hit;
    const g = fleet.byVmid.get(v)!;
    const before = Math.max(0, ...(fleet.deps.get(v) ?? []).filter((d) => !only || only.has(d)).map(finish));
    const t = before + g.bootMs;
    memo.set(v, t);
    return t;
  };
  let max = 0;
  for (const v of fleet.byVmid.keys()) if (!only || only.has(v)) max = Math.max(max, finish(v));
  return max;
}
