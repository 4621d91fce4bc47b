import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // 2-core CI machines: a few files at a time keeps the simulator timings honest
    maxWorkers: 2,
    minWorkers: 1,
    pool: 'forks',
    // the JSON report feeds .ci/run's plain `N passed, N failed` line
    reporters: ['default', ['json', { outputFile: 'test-results/vitest.json' }]],
  },
});
