// The nats-server child of `up` gets no secret of ours in its environment.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startNatsServer } from '../cli/nats-server.ts';

describe('nats-server child environment', () => {
  it('holds PATH but not PVE_TOKEN_SECRET, NATS credentials or other variables of ours', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'homeostat-nats-env-'));
    const saved = { ...process.env };
    Object.assign(process.env, { PVE_TOKEN_SECRET: '0e6f7a5b-1c2d-4e3f-8a9b-0c1d2e3f4a5b', NATS_PASSWORD: 'hunter2', HOMEOSTAT_SIGNING_KEY: 'SUAsecret' });
    const nats = await startNatsServer({ dataDir: dir, port: 0 });
    process.env = saved;
    try {
      const env = readFileSync(`/proc/${nats.pid}/environ`, 'utf8').split('\0').filter(Boolean).map((l) => l.split('=')[0]);
      expect(env).toContain('PATH');
      expect(env).not.toContain('PVE_TOKEN_SECRET');
      expect(env).not.toContain('NATS_PASSWORD');
      expect(env).not.toContain('HOMEOSTAT_SIGNING_KEY');
    } finally {
      await nats.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
