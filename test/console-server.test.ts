// The console's HTTP side without a browser: who may reach it (token off loopback, loopback host
// names only, same-origin JSON for anything that changes state), the modules it serves, and
// `homeostat up` printing consoleUrl and metricsUrl in its ready line.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Bus } from '../bus/mod.ts';
import { HomeostatError } from '../core/mod.ts';
import { createLogger } from '../core/mod.ts';
import { referenceFleet } from '../fleet/reference-fleet.ts';
import { startConsole, type ConsoleServer } from '../cli/console/mod.ts';

const TOKEN = 'a-console-token-of-some-length';
let bus: Bus;
let open: ConsoleServer;
let guarded: ConsoleServer;
beforeAll(async () => {
  bus = await Bus.connect({ servers: inject('natsUrl'), source: 'console-test' });
  const base = { bus, fleet: referenceFleet(), log: createLogger('silent'), port: 0 };
  open = await startConsole(base);
  guarded = await startConsole({ ...base, token: TOKEN });
});
afterAll(async () => {
  await open?.close();
  await guarded?.close();
  await bus?.stop();
});

/** A raw request (fetch will not let a test set Host or Origin). */
function raw(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

describe('console server', () => {
  it('refuses to listen beyond loopback without a token, and a short token', async () => {
    const base = { bus, fleet: referenceFleet(), log: createLogger('silent'), port: 0 };
    await expect(startConsole({ ...base, host: '0.0.0.0' })).rejects.toThrow(/needs a token/);
    await expect(startConsole({ ...base, host: '0.0.0.0' })).rejects.toBeInstanceOf(HomeostatError);
    await expect(startConsole({ ...base, token: 'short' })).rejects.toThrow(/at least 16/);
  });

  it('serves the page, its modules from node_modules and a strict content security policy', async () => {
    const page = await raw(open.url);
    expect(page.status).toBe(200);
    expect(String(page.headers['content-security-policy'])).toMatch(/default-src 'self'; script-src 'self' 'sha256-/);
    expect(page.body).toContain('<script type="importmap">');
    expect(page.body).not.toMatch(/https?:\/\/(?!127\.)/); // no CDN
    for (const m of ['/vendor/preact.mjs', '/vendor/preact-hooks.mjs', '/vendor/htm-preact.mjs', '/vendor/uPlot.esm.js', '/app/app.js']) {
      const r = await raw(new URL(m, open.url).href);
      expect(r.status, m).toBe(200);
      expect(r.headers['content-type'], m).toMatch(/javascript/);
    }
  });

  it('on loopback: answers only to a loopback Host (no DNS rebinding), and takes only same-origin JSON posts', async () => {
    const u = new URL(open.url);
    expect((await raw(open.url, { headers: { Host: `evil.example:${u.port}` } })).status).toBe(421);
    expect((await raw(new URL('/api/status', open.url).href, { headers: { Host: `localhost:${u.port}` } })).status).toBe(200);
    const approve = new URL('/api/approve', open.url).href;
    const cross = await raw(approve, { method: 'POST', headers: { Origin: 'http://evil.example', 'Content-Type': 'application/json' }, body: '{"actionId":"x"}' });
    expect(cross.status).toBe(403);
    const form = await raw(approve, { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'actionId=x' });
    expect(form.status).toBe(415);
    const bad = await raw(approve, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"actionId":""}' });
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error.message).toMatch(/actionId/);
  });

  it('with a token: 401 without it; a bearer header or the cookie from /?token= lets in', async () => {
    const status = new URL('/api/status', guarded.url).href;
    const denied = await raw(status);
    expect(denied.status).toBe(401);
    expect(denied.headers['www-authenticate']).toMatch(/Bearer/);
    expect((await raw(status, { headers: { Authorization: 'Bearer wrong-token-but-long-enough' } })).status).toBe(401);
    expect((await raw(status, { headers: { Authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
    expect((await raw(`${guarded.url}?token=nope`)).status).toBe(401);
    const login = await raw(`${guarded.url}?token=${TOKEN}`);
    expect(login.status).toBe(303);
    const cookie = String(login.headers['set-cookie']);
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    expect((await raw(status, { headers: { Cookie: cookie.split(';')[0] } })).status).toBe(200);
  });

  it('the live feed opens with a status snapshot', async () => {
    const res = await fetch(new URL('/api/live', open.url));
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    while (!text.includes('event: status')) text += new TextDecoder().decode((await reader.read()).value);
    await reader.cancel();
  });
});

describe('homeostat up', () => {
  const dir = mkdtempSync(join(tmpdir(), 'homeostat-console-up-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('prints consoleUrl and metricsUrl in its ready line, and both answer', async () => {
    const child = spawn(process.execPath, [new URL('../bin/homeostat.js', import.meta.url).pathname, 'up', '--sim', '--http', '--data-dir', dir,
      '--nats-port', '0', '--sim-port', '0', '--alertmanager-port', 'off', '--metrics-port', '0', '--console-port', '0', '--agents', 'operator,sensing'],
    { env: { ...process.env, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        createInterface({ input: child.stdout }).once('line', resolve);
        child.once('exit', (c) => reject(new Error(`up exited ${c}`)));
      });
      const ready = JSON.parse(line) as { consoleUrl: string; metricsUrl: string; natsUrl: string; natsCreds: string };
      expect(ready.consoleUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
      expect(ready.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      expect((await fetch(ready.consoleUrl)).status).toBe(200);
      const metrics = await (await fetch(ready.metricsUrl)).text();
      expect(metrics).toContain('homeostat_guests');
      // the embedded nats-server has authentication on: the console got in as the operator
      const status = await (await fetch(new URL('api/status', ready.consoleUrl))).json() as { fleet: string; guests: unknown[] };
      expect(status.fleet).toBe('reference');
      expect(status.guests).toHaveLength(12);

      // `homeostat console` alone: in with the operator's credentials, refused without
      const bin = new URL('../bin/homeostat.js', import.meta.url).pathname;
      const env = { ...process.env, LOG_LEVEL: 'warn', NATS_URL: '', NATS_CREDS: '', HOMEOSTAT_DATA_DIR: join(dir, 'elsewhere') };
      const alone = spawn(process.execPath, [bin, 'console', '--nats', ready.natsUrl, '--creds', ready.natsCreds, '--port', '0'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      try {
        const aloneLine = await new Promise<string>((resolve, reject) => {
          createInterface({ input: alone.stdout }).once('line', resolve);
          alone.once('exit', (c) => reject(new Error(`console exited ${c}`)));
        });
        const url = (JSON.parse(aloneLine) as { consoleUrl: string }).consoleUrl;
        expect((await fetch(new URL('api/status', url))).status).toBe(200);
      } finally {
        const gone = new Promise((r) => alone.once('exit', r));
        alone.kill('SIGTERM');
        await gone;
      }
      const refused = spawnSync(process.execPath, [bin, 'console', '--nats', ready.natsUrl, '--port', '0'], { env, encoding: 'utf8', timeout: 30_000 });
      expect(refused.status).toBe(1);
      expect(refused.stderr).toMatch(/HOMEOSTAT_ERR_AUTH/);
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
  }, 90_000);
});
