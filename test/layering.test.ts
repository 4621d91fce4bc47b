// The walls of the house, checked over every non-test .ts file's imports (static, dynamic,
// re-exports, `import type`): which folder may import which, and no import cycles between files.
// A failure names the file and the import to change.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');
const SKIP = new Set(['node_modules', 'dist', '.git', '.homeostat', 'coverage', 'test-results']);

interface Import {
  /** What the source says, e.g. `../bus/mod.ts` or `zod`. */
  spec: string;
  /** Project-relative path of the imported file (relative specifiers only). */
  target?: string;
  typeOnly: boolean;
  kind: 'static' | 'dynamic' | 're-export';
}

/** Every import of one source text. */
export function importsOf(file: string, text: string): Import[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const out: Import[] = [];
  const add = (spec: string, typeOnly: boolean, kind: Import['kind']) => {
    const target = spec.startsWith('.') ? relative(ROOT, resolve(ROOT, dirname(file), spec)).split(sep).join('/') : undefined;
    out.push({ spec, target, typeOnly, kind });
  };
  const visit = (n: ts.Node) => {
    if (ts.isImportDeclaration(n) && ts.isStringLiteral(n.moduleSpecifier)) {
      const c = n.importClause;
      const named = c?.namedBindings && ts.isNamedImports(c.namedBindings) ? c.namedBindings.elements : undefined;
      const typeOnly = !!c && (c.isTypeOnly || (!c.name && !!named && named.length > 0 && named.every((e) => e.isTypeOnly)));
      add(n.moduleSpecifier.text, typeOnly, 'static');
    } else if (ts.isExportDeclaration(n) && n.moduleSpecifier && ts.isStringLiteral(n.moduleSpecifier)) {
      const named = n.exportClause && ts.isNamedExports(n.exportClause) ? n.exportClause.elements : undefined;
      add(n.moduleSpecifier.text, n.isTypeOnly || (!!named && named.length > 0 && named.every((e) => e.isTypeOnly)), 're-export');
    } else if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = n.arguments;
      if (arg && ts.isStringLiteralLike(arg)) add(arg.text, false, 'dynamic');
      else out.push({ spec: '<computed>', typeOnly: false, kind: 'dynamic' });
    } else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument) && ts.isStringLiteral(n.argument.literal)) {
      add(n.argument.literal.text, true, 'static');
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

function* tsFiles(dir: string): Generator<string> {
  for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
    if (SKIP.has(e.name)) continue;
    const p = dir ? `${dir}/${e.name}` : e.name;
    if (e.isDirectory()) yield* tsFiles(p);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) yield p;
  }
}

const isTest = (f: string) => f.startsWith('test/') || f.endsWith('.test.ts');
const all = [...tsFiles('')].filter((f) => f !== 'vitest.config.ts');
const graph = new Map(all.map((f) => [f, importsOf(f, readFileSync(join(ROOT, f), 'utf8'))]));
const source = all.filter((f) => !isTest(f));

const folder = (f: string) => f.split('/')[0];
/** `agents/decision/x.ts` → `decision`; `agents/mod.ts` → undefined. */
const agentOf = (f: string) => (f.startsWith('agents/') && f.split('/').length > 2 ? f.split('/')[1] : undefined);

/** `file → spec` for every import of `files` that `bad` flags. */
function violations(files: string[], bad: (i: Import, file: string) => boolean): string[] {
  return files.flatMap((f) => graph.get(f)!.filter((i) => bad(i, f)).map((i) => `${f} → ${i.spec}${i.typeOnly ? ' (type)' : ''} [${i.kind}]`));
}
const inFolder = (...folders: string[]) => source.filter((f) => folders.includes(folder(f)));
const targetIn = (i: Import, ...folders: string[]) => i.target !== undefined && folders.includes(folder(i.target));

describe('layering', () => {
  it('the import parser sees static, type-only, dynamic imports and re-exports', () => {
    const found = importsOf('agents/x/a.ts', [
      "import { a } from '../../bus/mod.ts';",
      "import type { B } from '../../fleet/manifest.ts';",
      "import { type C, type D } from '../../llm/mod.ts';",
      "export * from '../../cli/main.ts';",
      "export type { E } from '../../workflows/mod.ts';",
      "const m = await import('../y/mod.ts');",
      "let t: import('../../core/mod.ts').Logger;",
    ].join('\n'));
    expect(found.map((i) => [i.target, i.typeOnly, i.kind])).toEqual([
      ['bus/mod.ts', false, 'static'],
      ['fleet/manifest.ts', true, 'static'],
      ['llm/mod.ts', true, 'static'],
      ['cli/main.ts', false, 're-export'],
      ['workflows/mod.ts', true, 're-export'],
      ['agents/y/mod.ts', false, 'dynamic'],
      ['core/mod.ts', true, 'static'],
    ]);
    expect(source.length).toBeGreaterThan(100);
    expect(source).toContain('core/mod.ts');
  });

  it('core/ (the kernel) imports no other folder of homeostat', () => {
    expect(violations(inFolder('core'), (i) => i.target !== undefined && folder(i.target) !== 'core')).toEqual([]);
  });

  it('state-machines/ imports nothing with I/O: only its own files, xstate and zod', () => {
    expect(violations(inFolder('state-machines'), (i) => (i.target ? folder(i.target) !== 'state-machines' : !['xstate', 'zod'].includes(i.spec)))).toEqual([]);
  });

  it('bus/ knows no agent, fleet, workflow, llm or cli (only core/)', () => {
    expect(violations(inFolder('bus'), (i) => i.target !== undefined && !['bus', 'core'].includes(folder(i.target)))).toEqual([]);
  });

  it('fleet/ (adapter and simulator) works without NATS or agents', () => {
    expect(violations(inFolder('fleet'), (i) => (i.target ? !['fleet', 'core'].includes(folder(i.target)) : i.spec.startsWith('@nats-io/')))).toEqual([]);
  });

  it('llm/ is a library: core/, its own files, and at most types from bus/', () => {
    expect(violations(inFolder('llm'), (i) => i.target !== undefined && !['llm', 'core'].includes(folder(i.target)) && !(folder(i.target) === 'bus' && i.typeOnly))).toEqual([]);
  });

  it('workflows/ never imports agents/ or cli/', () => {
    expect(violations(inFolder('workflows'), (i) => targetIn(i, 'agents', 'cli'))).toEqual([]);
  });

  it('only cli/, bin/ and bench/ import cli/', () => {
    expect(violations(source.filter((f) => !['cli', 'bin', 'bench'].includes(folder(f))), (i) => targetIn(i, 'cli'))).toEqual([]);
  });

  it('no agent folder imports another (the shared runtime aside); the runtime imports no agent', () => {
    const agents = source.filter((f) => agentOf(f) !== undefined);
    expect(violations(agents, (i, f) => {
      if (!i.target?.startsWith('agents/')) return false;
      const to = agentOf(i.target);
      return to !== agentOf(f) && to !== 'runtime';
    })).toEqual([]);
  });

  it('the test kit serves test/ and bench/ and imports neither (nor cli/ or agents/); test/ and bench/ import each other not', () => {
    expect(violations(inFolder('testkit'), (i) => targetIn(i, 'test', 'bench', 'cli', 'agents'))).toEqual([]);
    expect(violations(all.filter((f) => folder(f) === 'test'), (i) => targetIn(i, 'bench'))).toEqual([]);
    expect(violations(inFolder('bench'), (i) => targetIn(i, 'test'))).toEqual([]);
  });

  it('a file re-exports only its own folder: core/ is imported from core/, llm/ from llm/ (no barrel hands out another folder)', () => {
    expect(violations(source, (i, f) => i.kind === 're-export' && i.target !== undefined && folder(i.target) !== folder(f))).toEqual([]);
  });

  it('every relative import names a file that exists', () => {
    const known = new Set(all);
    expect(violations(all, (i) => i.target !== undefined && i.target.endsWith('.ts') && !known.has(i.target))).toEqual([]);
  });

  it('no import cycles between files (type-only and dynamic imports count)', () => {
    expect(cycles(source)).toEqual([]);
  });

  it('the cycle finder finds a cycle', () => {
    const g = new Map([['a.ts', ['b.ts']], ['b.ts', ['c.ts']], ['c.ts', ['a.ts']], ['d.ts', ['a.ts']]]);
    expect(stronglyConnected(g)).toEqual([['a.ts', 'b.ts', 'c.ts']]);
  });
});

/** Tarjan's strongly connected components with more than one file (or a file importing itself). */
function stronglyConnected(g: Map<string, string[]>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const on = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    on.add(v);
    for (const w of g.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (on.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        on.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (g.get(v) ?? []).includes(v)) out.push(comp.sort());
    }
  };
  for (const v of g.keys()) if (!idx.has(v)) visit(v);
  return out;
}

function cycles(files: string[]): string[][] {
  const set = new Set(files);
  const g = new Map(files.map((f) => [f, graph.get(f)!.flatMap((i) => (i.target && set.has(i.target) ? [i.target] : []))]));
  return stronglyConnected(g);
}
