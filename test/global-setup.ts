// Starts one real nats-server with JetStream on a free port and a temp store for the whole run.
import type { TestProject } from 'vitest/node';
import { startNatsServer, type NatsServerHandle } from '../cli/nats-server.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let server: NatsServerHandle | undefined;
let dir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  // suites that spawn `bin/homeostat.js` run dist/: rebuild it when a source is newer (also when
  // vitest is run directly rather than through `npm test`)
  const { build, isStale } = await import('../scripts/build.mjs');
  if (isStale() && !build()) throw new Error('the build of dist/ failed (npm run build)');
  dir = mkdtempSync(join(tmpdir(), 'homeostat-test-nats-'));
  server = await startNatsServer({ dataDir: dir, port: 0 });
  project.provide('natsUrl', server.url);
  project.provide('natsPort', server.port);
}

export async function teardown(): Promise<void> {
  await server?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
}

declare module 'vitest' {
  export interface ProvidedContext {
    natsUrl: string;
    natsPort: number;
  }
}
