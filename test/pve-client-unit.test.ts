// The adapter's error mapping and retry policy against a scripted HTTP server that answers like
// PVE (status line reason, JSON envelope). The simulator suite covers the same paths end to end.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isHomeostatError, type HomeostatError, sleep } from '../core/mod.ts';
import { createPveClient, parseUpid, pveClientOptionsFromEnv, upidNode, type PveClientOptions, type PveRequestEvent } from '../fleet/pve-client.ts';

type Reply = (req: IncomingMessage, res: ServerResponse, body: string) => void;
const SECRET = '0e6f7a5b-1c2d-4e3f-8a9b-0c1d2e3f4a5b';
const UPID = 'UPID:node-a:000012AB:0001E240:6650A1B2:vzstart:101:homeostat@pve!agent:';

function pve(status: number, reason: string, payload: unknown): Reply {
  return (_req, res) => {
    res.statusCode = status;
    res.statusMessage = reason;
    res.setHeader('Content-Type', 'application/json;charset=UTF-8');
    res.end(JSON.stringify(payload));
  };
}

let server: Server;
let url: string;
let script: Reply[] = [];
let seen: { method: string; url: string; auth?: string; body: string }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization, body });
      const next = script.length > 1 ? script.shift()! : script[0];
      next(req, res, body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

function client(extra: Partial<PveClientOptions> = {}) {
  const events: PveRequestEvent[] = [];
  seen = [];
  const c = createPveClient({ url, tokenId: 'homeostat@pve!agent', tokenSecret: SECRET, retryBaseMs: 1, retryMaxMs: 5, onRequest: (e) => events.push(e), ...extra });
  return { c, events };
}

async function failure(p: Promise<unknown>): Promise<HomeostatError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  if (!isHomeostatError(e)) throw new Error(`expected a HomeostatError, got ${String(e)}`);
  return e;
}

describe('PVE adapter against a scripted server', () => {
  it('sends the token header and unwraps the data envelope', async () => {
    script = [pve(200, 'OK', { data: [{ node: 'node-a', status: 'online', cpu: 0.1, maxcpu: 8 }] })];
    const { c } = client();
    expect(await c.listNodes()).toEqual([{ node: 'node-a', status: 'online', cpu: 0.1, maxcpu: 8 }]);
    expect(seen[0]).toMatchObject({ method: 'GET', url: '/api2/json/nodes', auth: `PVEAPIToken=homeostat@pve!agent=${SECRET}` });
    await c.close();
  });

  it('posts form parameters and returns the UPID', async () => {
    script = [pve(200, 'OK', { data: UPID })];
    const { c } = client();
    expect(await c.shutdown({ node: 'node-a', vmid: 101, type: 'lxc' }, { timeoutSec: 30, forceStop: true })).toBe(UPID);
    expect(seen[0]).toMatchObject({ method: 'POST', url: '/api2/json/nodes/node-a/lxc/101/status/shutdown', body: 'timeout=30&forceStop=1' });
    await c.close();
  });

  it('maps 401 to PVE_AUTH without a retry', async () => {
    script = [pve(401, 'authentication failure', { data: null })];
    const { c, events } = client();
    const e = await failure(c.version());
    expect(e.code).toBe('HOMEOSTAT_ERR_PVE_AUTH');
    expect(e.message).toBe('GET /version: PVE refused the token: 401 authentication failure');
    expect(seen).toHaveLength(1);
    expect(events).toHaveLength(1);
    await c.close();
  });

  it("maps 400 to PVE_BAD_REQUEST with PVE's errors object", async () => {
    script = [pve(400, 'Parameter verification failed.', { data: null, errors: { timeout: 'value must have a minimum value of 0' } })];
    const { c } = client();
    const e = await failure(c.reboot({ node: 'node-a', vmid: 101, type: 'qemu' }, { timeoutSec: -1 }));
    expect(e.code).toBe('HOMEOSTAT_ERR_PVE_BAD_REQUEST');
    expect(e.message).toContain('POST /nodes/node-a/qemu/101/status/reboot');
    expect(e.message).toContain('{"timeout":"value must have a minimum value of 0"}');
    expect(seen).toHaveLength(1);
    await c.close();
  });

  it('maps 404 and a 500 "does not exist" to PVE_NOT_FOUND without retries', async () => {
    script = [pve(500, "Configuration file 'nodes/node-a/lxc/999.conf' does not exist", { data: null })];
    const { c } = client();
    const e = await failure(c.guestStatus({ node: 'node-a', vmid: 999, type: 'lxc' }));
    expect(e.code).toBe('HOMEOSTAT_ERR_PVE_NOT_FOUND');
    expect(seen).toHaveLength(1);
    script = [pve(404, 'Not Found', { data: null })];
    expect((await failure(c.taskStatus('node-a', UPID))).code).toBe('HOMEOSTAT_ERR_PVE_NOT_FOUND');
    await c.close();
  });

  it('retries 5xx and 595 and then succeeds', async () => {
    script = [pve(500, 'Internal error', { data: null }), pve(595, 'No route to host', { data: null }), pve(200, 'OK', { data: { version: '9.0.3', release: '9.0', repoid: 'a1b2c3d4' } })];
    const { c, events } = client();
    expect(await c.version()).toEqual({ version: '9.0.3', release: '9.0', repoid: 'a1b2c3d4' });
    expect(events.map((e) => e.status)).toEqual([500, 595, 200]);
    await c.close();
  });

  it('gives up after 1 + retries attempts with one clear line', async () => {
    script = [pve(500, 'got timeout', { data: null })];
    const { c } = client({ retries: 2 });
    const e = await failure(c.clusterGuests());
    expect(e.code).toBe('HOMEOSTAT_ERR_PVE_UNAVAILABLE');
    expect(e.message).toBe('GET /cluster/resources?type=vm: PVE answered 500 got timeout (after 3 attempts)');
    expect(e.message).not.toContain('\n');
    expect(e.cause).toBeInstanceOf(Error);
    expect(seen).toHaveLength(3);
    await c.close();
  });

  it('maps a slow answer to PVE_TIMEOUT', async () => {
    script = [(_q, res) => setTimeout(() => pve(200, 'OK', { data: [] })(_q, res, ''), 400)];
    const { c } = client({ timeoutMs: 50, retries: 1 });
    const e = await failure(c.haResources());
    expect(e.code).toBe('HOMEOSTAT_ERR_PVE_TIMEOUT');
    expect(e.message).toMatch(/^GET \/cluster\/ha\/resources: no answer from 127\.0\.0\.1:\d+ within 100 ms \(after 2 attempts\)$/);
    await c.close();
  });

  it('gives a read that timed out twice the time on its next attempt', async () => {
    script = [(_q, res) => setTimeout(() => pve(200, 'OK', { data: [] })(_q, res, ''), 400)];
    const { c, events } = client({ timeoutMs: 200, retries: 3 });
    expect(await c.haResources()).toEqual([]);
    // 200 ms is too short, 400, 800 or 1600 ms is not: the answer comes on a later attempt
    expect(events[0].error).toBe('HOMEOSTAT_ERR_PVE_TIMEOUT');
    expect(events.at(-1)?.status).toBe(200);
    await c.close();
  });

  it('never sends a state-changing POST again after a timeout: PVE_UNCERTAIN, one request', async () => {
    script = [(_q, res) => setTimeout(() => pve(200, 'OK', { data: UPID })(_q, res, ''), 300)];
    const { c } = client({ timeoutMs: 50, retries: 3 });
    const e = await failure(c.reboot({ node: 'node-a', vmid: 101, type: 'lxc' }));
    expect(e.code).toBe('HOMEOSTAT_ERR_PVE_UNCERTAIN');
    expect(e.message).toMatch(/^POST \/nodes\/node-a\/lxc\/101\/status\/reboot: no answer .* not sent again blindly$/);
    await sleep(500); // a retry would have reached the server by now
    expect(seen).toHaveLength(1);
    await c.close();
  });

  it('sends a POST again when PVE answered with an error (it did not run it)', async () => {
    script = [pve(503, 'busy', { data: null }), pve(200, 'OK', { data: UPID })];
    const { c } = client();
    expect(await c.start({ node: 'node-a', vmid: 101, type: 'lxc' })).toBe(UPID);
    expect(seen).toHaveLength(2);
    await c.close();
  });

  it('maps a refused connection to PVE_UNAVAILABLE, one request per attempt', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const { c, events } = client({ url: `http://127.0.0.1:${port}`, retries: 2 });
    const e = await failure(c.listNodes());
    expect(e.code).toBe('HOMEOSTAT_ERR_PVE_UNAVAILABLE');
    expect(e.message).toContain('ECONNREFUSED');
    expect(events).toHaveLength(3);
    await c.close();
  });

  it('rejects with the abort reason and stops retrying', async () => {
    script = [pve(503, 'busy', { data: null })];
    const { c } = client({ retryBaseMs: 10_000, retryMaxMs: 10_000 });
    const ctl = new AbortController();
    const p = c.waitForTask('node-a', UPID, { signal: ctl.signal });
    setTimeout(() => ctl.abort(new Error('operator cancelled')), 50);
    await expect(p).rejects.toThrow('operator cancelled');
    await c.close();
  });

  it('validates options with HOMEOSTAT_ERR_CONFIG', () => {
    expect(() => createPveClient({ url: 'ftp://pve', tokenId: 'a@pve!b', tokenSecret: SECRET })).toThrow(/^PVE_URL \(PVE client option url\): expected an http\(s\) URL/);
    expect(() => createPveClient({ url, tokenId: 'root', tokenSecret: SECRET })).toThrow(/^PVE_TOKEN_ID \(PVE client option tokenId\): expected USER@REALM!TOKENID/);
    expect(() => createPveClient({ url, tokenId: 'a@pve!b', tokenSecret: 'hunter2' })).toThrow(/^PVE_TOKEN_SECRET \(PVE client option tokenSecret\): expected the token secret/);
  });

  it('parses UPIDs', () => {
    expect(parseUpid(UPID)).toEqual({ node: 'node-a', pid: 0x12ab, pstart: 0x1e240, starttime: 0x6650a1b2, type: 'vzstart', id: '101', user: 'homeostat@pve!agent' });
    expect(upidNode(UPID)).toBe('node-a');
    expect(() => upidNode('nope')).toThrow(/not a PVE task id/);
  });

  it('reads options from env, naming the variable on error', () => {
    const ok = { PVE_URL: 'https://pve.lan:8006', PVE_TOKEN_ID: 'homeostat@pve!agent', PVE_TOKEN_SECRET: SECRET };
    expect(pveClientOptionsFromEnv(ok)).toMatchObject({ url: 'https://pve.lan:8006', tokenId: 'homeostat@pve!agent', insecure: false, timeoutMs: 5000, retries: 3 });
    expect(pveClientOptionsFromEnv({ ...ok, PVE_INSECURE: '1' }).insecure).toBe(true);
    const fails = (env: Record<string, string>) => {
      try {
        pveClientOptionsFromEnv(env);
      } catch (e) {
        if (isHomeostatError(e, 'HOMEOSTAT_ERR_CONFIG')) return e.message;
        throw e;
      }
      throw new Error('expected a config error');
    };
    expect(fails({ ...ok, PVE_URL: 'pve.lan' })).toBe('PVE_URL: expected an http(s) URL of the PVE API, e.g. https://pve.lan:8006 (got "pve.lan")');
    expect(fails({ ...ok, PVE_URL: 'https://pve.lan:8006/api2/json' })).toMatch(/^PVE_URL: expected only scheme, host and port/);
    expect(fails({ PVE_TOKEN_ID: ok.PVE_TOKEN_ID, PVE_TOKEN_SECRET: SECRET })).toBe('PVE_URL: required (see docs/real-pve.md)');
    expect(fails({ ...ok, PVE_TOKEN_ID: 'root@pam' })).toMatch(/^PVE_TOKEN_ID: expected USER@REALM!TOKENID/);
    const secret = fails({ ...ok, PVE_TOKEN_SECRET: 'not-a-uuid-secret' });
    expect(secret).toMatch(/^PVE_TOKEN_SECRET: /);
    expect(secret).not.toContain('not-a-uuid-secret');
    expect(fails({ ...ok, PVE_INSECURE: 'maybe' })).toMatch(/^PVE_INSECURE: expected 1 or 0/);
    expect(fails({ ...ok, PVE_CA_FILE: '/nonexistent/ca.pem' })).toMatch(/^PVE_CA_FILE: cannot read "\/nonexistent\/ca.pem" \(ENOENT\)/);
    const dir = mkdtempSync(join(tmpdir(), 'pve-env-'));
    writeFileSync(join(dir, 'junk.pem'), 'hello');
    expect(fails({ ...ok, PVE_CA_FILE: join(dir, 'junk.pem') })).toMatch(/^PVE_CA_FILE: .* holds no PEM certificate/);
    writeFileSync(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    expect(pveClientOptionsFromEnv({ ...ok, PVE_CA_FILE: join(dir, 'ca.pem') }).caPem).toContain('BEGIN CERTIFICATE');
    expect(pveClientOptionsFromEnv({ ...ok, PVE_CA_FILE: join(dir, 'ca.pem'), PVE_INSECURE: '1' }).insecure).toBe(true);
  });
});
