// `npm run bench`: every benchmark in turn, JSON lines on stdout. BENCH=bus,sim picks some.
import { existsSync } from 'node:fs';

const ALL = ['bus', 'sim', 'pipeline', 'mttr', 'boot', 'failover', 'advisor', 'seal', 'console', 'scale'];
const pick = process.env.BENCH ? process.env.BENCH.split(',').map((s) => s.trim()) : ALL;
let failed = 0;
for (const name of pick) {
  const file = new URL(`./${name}.ts`, import.meta.url);
  if (!existsSync(file)) {
    process.stdout.write(`${JSON.stringify({ bench: name, skipped: 'not present' })}\n`);
    continue;
  }
  try {
    const mod = (await import(file.href)) as { run?: () => Promise<void>; default?: () => Promise<void> };
    const run = mod.run ?? mod.default;
    if (run) await run();
  } catch (e) {
    failed++;
    process.stdout.write(`${JSON.stringify({ bench: name, error: (e as Error).message })}\n`);
  }
}
process.exitCode = failed ? 1 : 0;
