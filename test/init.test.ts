// `homeostat init`, as compose runs it: identities, the trust file and nats-server's authorization
// into a data directory; a nats-server started on that authorization (as compose's three are);
// `init --nats` creates the streams as admin; then the decision and action agents start as their
// own identities with nothing but NATS_CREDS and HOMEOSTAT_TRUST_FILE, and a client without
// credentials is refused.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { connect } from '@nats-io/transport-node';
import { IDENTITIES, readIdentity } from '../bus/mod.ts';
import { startNatsServer, type NatsServerHandle } from '../cli/nats-server.ts';

const BIN = new URL('../bin/homeostat.js', import.meta.url).pathname;
const root = mkdtempSync(join(tmpdir(), 'homeostat-init-'));
const dir = join(root, 'homeostat');
let nats: NatsServerHandle | undefined;
const children: ReturnType<typeof spawn>[] = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await nats?.stop();
  rmSync(root, { recursive: true, force: true });
});

const env = { ...process.env, NATS_URL: '', NATS_CREDS: '', HOMEOSTAT_DECISION_KEYS: '', HOMEOSTAT_OPERATOR_KEYS: '', LOG_LEVEL: 'warn' };
const init = (args: string[]) => spawnSync(process.execPath, [BIN, 'init', '--data-dir', dir, ...args], { env, encoding: 'utf8', timeout: 90_000 });

describe('homeostat init', () => {
  it('writes one seed per identity (600), the trust file and the authorization block; a second run keeps them', () => {
    const r = init([]);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { trustFile: string; natsAuthConf: string; operatorCreds: string };
    const ids = Object.fromEntries(IDENTITIES.map((n) => [n, readIdentity(join(dir, 'creds', `${n}.nk`))]));
    for (const n of IDENTITIES) expect(statSync(join(dir, 'creds', `${n}.nk`)).mode & 0o777, n).toBe(0o600);
    expect(JSON.parse(readFileSync(out.trustFile, 'utf8'))).toEqual({ decision: [ids.decision.publicKey], operators: [ids.operator.publicKey, ids['operator-agent'].publicKey] });
    const auth = readFileSync(out.natsAuthConf, 'utf8');
    expect(auth).toMatch(/^authorization \{/);
    for (const n of IDENTITIES) expect(auth, n).toContain(ids[n].publicKey);
    expect(out.operatorCreds).toBe(join(dir, 'creds', 'operator.nk'));

    expect(init([]).status).toBe(0);
    expect(readIdentity(join(dir, 'creds', 'decision.nk')).publicKey).toBe(ids.decision.publicKey);
  });

  it('a nats-server on that authorization; init --nats creates the streams; decision and action start as themselves', async () => {
    expect(existsSync(join(dir, 'nats', 'auth.conf'))).toBe(true);
    // a cluster's server N starts on server-N.conf: the authorization (included) and lease store N's tag
    expect(readFileSync(join(dir, 'nats', 'server-2.conf'), 'utf8')).toContain('server_tags: ["homeostat-lease-2"]');
    nats = await startNatsServer({ dataDir: join(root, 'store'), port: 0, args: ['-c', join(dir, 'nats', 'server-1.conf')] });
    await expect(connect({ servers: nats.url, reconnect: false, timeout: 3000 })).rejects.toThrow(/Authorization/i);

    const r = init(['--nats', nats.url]);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ streams: 'created or up to date' });

    for (const [agent, identity] of [['action', 'action'], ['decision', 'decision']] as const) {
      const child = spawn(process.execPath, [BIN, 'agent', agent], {
        env: { ...env, NATS_URL: nats.url, NATS_CREDS: join(dir, 'creds', `${identity}.nk`), HOMEOSTAT_TRUST_FILE: join(dir, 'creds', 'trust.json') },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout! }).once('line', resolve);
        child.once('exit', (code) => reject(new Error(`${agent} exited (${code}) before its ready line: ${stderr}`)));
      });
      expect(JSON.parse(line), agent).toMatchObject({ ready: true, agent });
      const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect(await exit, `${agent}: ${stderr}`).toBe(0);
    }
  }, 120_000);
});
