#!/usr/bin/env node
// `npm run build`: compiles the TypeScript sources into dist/ (tsc, tsconfig.build.json) and copies
// the files the code reads at run time (simulator schema, experiments, …), so production processes
// run on plain `node` with no TypeScript loader. `--if-stale` builds only when a source file is
// newer than the last build (what `npm run demo` and `npm test` call before they start).
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
export const SOURCE_DIRS = ['bus', 'core', 'agents', 'state-machines', 'workflows', 'fleet', 'llm', 'cli'];
const DIST = join(ROOT, 'dist');
const STAMP = join(DIST, '.built');
const BUILD_INFO = join(DIST, '.tsbuildinfo');

function* files(dir) {
  if (!existsSync(dir)) return;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* files(p);
    else yield p;
  }
}

const sources = () => SOURCE_DIRS.flatMap((d) => [...files(join(ROOT, d))]).concat([join(ROOT, 'tsconfig.json'), join(ROOT, 'tsconfig.build.json')]);

export function isStale() {
  if (!existsSync(STAMP)) return true;
  const built = statSync(STAMP).mtimeMs;
  return sources().some((f) => statSync(f).mtimeMs > built);
}

export function build() {
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const compile = (stdio) => spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json')], { stdio: ['ignore', stdio, stdio] });
  // an incremental build from a stale dist/.tsbuildinfo (dependencies changed under it) can report
  // type errors a clean build does not: on errors, build once more from scratch before saying so
  let r = compile(existsSync(BUILD_INFO) ? 'ignore' : 'inherit');
  if (r.status !== 0 && existsSync(BUILD_INFO)) {
    rmSync(BUILD_INFO, { force: true });
    r = compile('inherit');
  }
  // tsc still writes dist/ on type errors; `npm run check` is where those are caught
  if (r.status !== 0 && !existsSync(join(DIST, 'cli', 'main.js'))) return false;
  if (r.status !== 0) console.error('homeostat: the build reported type errors (dist/ was written anyway; see `npm run check`)');
  for (const f of sources()) {
    if (f.endsWith('.ts') || !SOURCE_DIRS.some((d) => f.startsWith(join(ROOT, d)))) continue;
    const to = join(DIST, relative(ROOT, f));
    mkdirSync(dirname(to), { recursive: true });
    copyFileSync(f, to);
  }
  writeFileSync(STAMP, `${new Date().toISOString()}\n`);
  return true;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const ifStale = process.argv.includes('--if-stale');
  if (!ifStale || isStale()) {
    if (ifStale) console.error('homeostat: building dist/ (tsc)…');
    if (!build()) process.exit(1);
  }
}
