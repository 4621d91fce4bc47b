import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../agents/mod.ts';

const run = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, ['bin/homeostat.js', ...args], { encoding: 'utf8', timeout: 20_000, env: { ...process.env, ...env } });

describe('config', () => {
  it('has defaults', () => {
    const c = loadConfig({});
    expect(c.NATS_URL).toBe('nats://127.0.0.1:4222');
    expect(c.LOG_LEVEL).toBe('info');
    expect(c.HOMEOSTAT_WORKFLOW_STEPS).toBe(64);
    expect(Object.isFrozen(c)).toBe(true);
  });

  it.each([
    [{ NATS_URL: 'http://x' }, /^NATS_URL: expected a nats:\/\/ URL/],
    [{ PVE_URL: 'pve.lan' }, /^PVE_URL: expected an http\(s\) URL/],
    [{ PVE_TOKEN_ID: 'root', PVE_TOKEN_SECRET: '0e6f6a6e-7d1c-4c2b-9a51-6f3c2b1a0d9e' }, /^PVE_TOKEN_ID: expected USER@REALM!TOKENID/],
    [{ PVE_TOKEN_ID: 'a@pve!b' }, /^PVE_TOKEN_SECRET: expected to be set together/],
    [{ PVE_CA_FILE: '/nonexistent.pem' }, /^PVE_CA_FILE: cannot read "\/nonexistent.pem" \(ENOENT\)/],
    // the same reader as the PVE client's (pveClientOptionsFromEnv): a file without a certificate is refused here too
    [{ PVE_CA_FILE: 'package.json' }, /^PVE_CA_FILE: "package.json" holds no PEM certificate/],
    [{ PVE_INSECURE: 'maybe' }, /^PVE_INSECURE: expected 1 or 0/],
    [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL: expected one of/],
    [{ OLLAMA_HOST: 'ollama' }, /^OLLAMA_HOST: expected an http\(s\) URL/],
    [{ HOMEOSTAT_WORKFLOW_STEPS: 'many' }, /^HOMEOSTAT_WORKFLOW_STEPS: expected a whole number of steps/],
    [{ HOMEOSTAT_WORKFLOW_STEPS: '0' }, /^HOMEOSTAT_WORKFLOW_STEPS: /],
    [{ HOMEOSTAT_WORKFLOW_STEPS: '2.5' }, /^HOMEOSTAT_WORKFLOW_STEPS: expected a whole number of steps/],
  ])('%o → one line naming the variable', (env, re) => {
    expect(() => loadConfig(env)).toThrow(re);
  });

  it('never echoes a secret in the error', () => {
    let msg = '';
    try {
      loadConfig({ PVE_TOKEN_ID: 'a@pve!b', PVE_TOKEN_SECRET: 'hunter2' });
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/^PVE_TOKEN_SECRET: expected the token secret as the lowercase UUID/);
    expect(msg).not.toContain('hunter2');
  });

  it('CLI: bad config exits 2 with one line on stderr, no stack', () => {
    const r = run(['events', '--no-follow'], { LOG_LEVEL: 'loud' });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/HOMEOSTAT_ERR_CONFIG: LOG_LEVEL: expected one of/);
    expect(r.stderr).not.toMatch(/at .*\.ts:\d+/);
  });

  it('CLI: unknown flags and commands exit 2; --help exits 0', () => {
    expect(run(['events', '--bogus']).status).toBe(2);
    expect(run(['frobnicate']).status).toBe(2);
    const h = run(['--help']);
    expect(h.status).toBe(0);
    expect(h.stdout).toMatch(/Usage: homeostat <command>/);
    for (const c of ['up', 'events', 'sim', 'agent']) {
      const r = run([c, '--help']);
      expect(r.status, c).toBe(0);
      expect(r.stdout).toMatch(/Usage: homeostat/);
    }
  });

  it('CLI: an unreachable NATS is a clear error, exit 1', () => {
    const r = run(['events', '--no-follow', '--nats', 'nats://127.0.0.1:1']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/HOMEOSTAT_ERR_NATS_UNAVAILABLE: cannot reach NATS at nats:\/\/127.0.0.1:1/);
  });
});
