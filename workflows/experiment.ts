// Chaos experiment files: YAML, zod-validated; errors name the field (`method[0].fault: …`).
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { HomeostatError } from '../core/mod.ts';
import type { Fleet } from '../fleet/manifest.ts';

const Target = z.union([z.number().int().min(100), z.string().min(1).max(64)]);

export const Probe = z.discriminatedUnion('probe', [
  /** `except`: guests the experiment expects down afterwards (e.g. one on a flap hold-down). */
  z.object({ probe: z.literal('all-guests-healthy'), except: z.array(z.number().int().min(100)).max(100).optional() }),
  z.object({ probe: z.literal('guest-healthy'), vmid: z.number().int().min(100) }),
  z.object({ probe: z.literal('node-online'), node: z.string().min(1) }),
  z.object({ probe: z.literal('no-open-incidents') }),
]);
export type Probe = z.infer<typeof Probe>;

export const SIM_FAULTS = ['crash', 'hang', 'unhealthy', 'node-down', 'api-error', 'api-slow', 'disk-fill', 'cpu-spike', 'mem-spike', 'cert-expiring'] as const;
/** Against a real PVE host only these (guest power operations), never node-level faults. */
export const REAL_PVE_FAULTS = ['stop', 'shutdown'] as const;

export const FaultStep = z.object({
  fault: z.enum([...SIM_FAULTS, ...REAL_PVE_FAULTS]),
  target: Target,
  durationMs: z.number().int().min(0).max(3_600_000).optional(),
  params: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).optional(),
  /** Repeat the injection (flapping); each repeat waits `intervalMs` or for the heal. */
  repeat: z.number().int().min(1).max(20).default(1),
  intervalMs: z.number().int().min(0).max(600_000).default(0),
  /** What recovery looks like: the guest healthy again, or homeostat holding it down (flapping). */
  expect: z.enum(['healed', 'held', 'none']).default('healed'),
  /** The guest whose recovery is measured (default: the target when it is a guest). */
  healTarget: z.number().int().min(100).optional(),
});
export type FaultStep = z.infer<typeof FaultStep>;

export const Rollback = z.discriminatedUnion('action', [
  z.object({ action: z.literal('clear-faults') }),
  z.object({ action: z.literal('start'), vmid: z.number().int().min(100) }),
  z.object({ action: z.literal('start-all') }),
  z.object({ action: z.literal('rollback-snapshot'), vmid: z.number().int().min(100), snapname: z.string().min(1).max(40) }),
  /** Lift the decision agent's flap hold-down (what an operator would do after a flapping test). */
  z.object({ action: z.literal('clear-hold'), vmid: z.number().int().min(100) }),
]);
export type Rollback = z.infer<typeof Rollback>;

export const Experiment = z.object({
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'expected a lowercase name with dashes'),
  description: z.string().max(500).default(''),
  steadyState: z.array(Probe).min(1, 'expected at least one probe'),
  method: z.array(FaultStep).min(1, 'expected at least one fault'),
  rollbacks: z.array(Rollback).default([{ action: 'clear-faults' }]),
  blastRadius: z.object({
    maxGuests: z.number().int().min(1).default(3),
    allowProtected: z.boolean().default(false),
    allowNodeFaults: z.boolean().default(false),
  }).default({ maxGuests: 3, allowProtected: false, allowNodeFaults: false }),
  abort: z.object({
    /** Abort (and roll back) when more guests than this are down at once. */
    maxGuestsDown: z.number().int().min(1).optional(),
    timeoutMs: z.number().int().min(1000).default(600_000),
  }).default({ timeoutMs: 600_000 }),
  slo: z.object({ mttrMs: z.number().int().min(1000).default(300_000) }).default({ mttrMs: 300_000 }),
});
export type Experiment = z.infer<typeof Experiment>;

function experimentError(msg: string): HomeostatError {
  return new HomeostatError('HOMEOSTAT_ERR_EXPERIMENT', msg);
}

const path = (p: PropertyKey[]) => p.reduce<string>((s, k) => (typeof k === 'number' ? `${s}[${k}]` : s ? `${s}.${String(k)}` : String(k)), '') || '(root)';

/** Validate an experiment and check it against the fleet: targets exist, blast radius holds. */
export function parseExperiment(input: unknown, fleet: Fleet, source = 'experiment'): Experiment {
  const r = Experiment.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    throw experimentError(`${source}: ${path(i.path)}: ${i.message}`);
  }
  const e = r.data;
  const touched = new Set<number>();
  e.method.forEach((m, idx) => {
    const at = `${source}: method[${idx}].target`;
    const nodeFault = m.fault === 'node-down';
    const apiFault = m.fault === 'api-error' || m.fault === 'api-slow';
    if (nodeFault || apiFault) {
      if (nodeFault && !e.blastRadius.allowNodeFaults) throw experimentError(`${at}: node-level fault needs blastRadius.allowNodeFaults: true`);
      if (!(m.target === '*' || fleet.nodes.some((n) => n.name === m.target))) throw experimentError(`${at}: unknown node ${JSON.stringify(m.target)}`);
      if (nodeFault) fleet.guests.filter((g) => g.node === m.target).forEach((g) => touched.add(g.vmid));
      return;
    }
    const g = fleet.byVmid.get(Number(m.target));
    if (!g) throw experimentError(`${at}: unknown guest ${JSON.stringify(m.target)}`);
    if (g.protected && !e.blastRadius.allowProtected) throw experimentError(`${at}: ${g.name} (${g.vmid}) is protected; set blastRadius.allowProtected: true to include it`);
    touched.add(g.vmid);
  });
  if (touched.size > e.blastRadius.maxGuests) {
    throw experimentError(`${source}: blastRadius.maxGuests: the method touches ${touched.size} guests, more than ${e.blastRadius.maxGuests}`);
  }
  return e;
}

export const EXPERIMENTS_DIR = fileURLToPath(new URL('./experiments/', import.meta.url));

export function loadExperimentFile(file: string, fleet: Fleet): Experiment {
  let data: unknown;
  try {
    data = parseYaml(readFileSync(file, 'utf8'));
  } catch (e) {
    throw experimentError(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : `not valid YAML: ${(e as Error).message.split('\n')[0]}`}`);
  }
  return parseExperiment(data, fleet, basename(file));
}

/** Experiments shipped in workflows/experiments plus any in extra dirs; a name or a path resolves. */
export function listExperiments(fleet: Fleet, dirs: string[] = [EXPERIMENTS_DIR]): { name: string; file: string; experiment?: Experiment; error?: string }[] {
  const out: { name: string; file: string; experiment?: Experiment; error?: string }[] = [];
  for (const dir of dirs) {
    let files: string[] = [];
    try {
      files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort();
    } catch {
      continue;
    }
    for (const f of files) {
      const file = join(dir, f);
      try {
        const experiment = loadExperimentFile(file, fleet);
        out.push({ name: experiment.name, file, experiment });
      } catch (e) {
        out.push({ name: f.replace(/\.ya?ml$/, ''), file, error: (e as Error).message });
      }
    }
  }
  return out;
}

export function findExperiment(nameOrPath: string, fleet: Fleet, dirs: string[] = [EXPERIMENTS_DIR]): Experiment {
  if (/[/\\]|\.ya?ml$/.test(nameOrPath)) return loadExperimentFile(nameOrPath, fleet);
  const hit = listExperiments(fleet, dirs).find((x) => x.name === nameOrPath);
  if (!hit) throw new HomeostatError('HOMEOSTAT_ERR_NOT_FOUND', `no experiment ${JSON.stringify(nameOrPath)}; see \`homeostat chaos list\``);
  if (hit.error) throw experimentError(hit.error);
  return hit.experiment!;
}
