#!/usr/bin/env node
// Runs the compiled CLI (dist/, built by `npm run build`; `npm run demo` and `npm test` build it
// when a source is newer) on plain node: production processes load no TypeScript loader.
import { existsSync } from 'node:fs';

const main = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  process.stderr.write('homeostat: dist/ is missing; run `npm run build` (or `npm run demo`, which builds first)\n');
  process.exit(2);
}
const mod = await import(main.href);
process.exitCode = await mod.main(process.argv.slice(2));
