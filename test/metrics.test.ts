// Prometheus metrics on a real stack: a crash healed end to end moves the counters and histograms
// the dashboards and alert rules read; the exposition passes `promtool check metrics` when present.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { METRIC_NAMES } from '../agents/mod.ts';
import { startMetricsServer, type MetricsServer } from '../cli/metrics-server.ts';
import { testStack, type TestStack } from './helpers/stack.ts';
import { until } from './helpers/bus.ts';
import { parseExposition, sample, type Sample } from './helpers/prom.ts';

let stack: TestStack;
let server: MetricsServer;
beforeAll(async () => {
  stack = await testStack({ source: 'metrics-test', options: { decision: { advisor: null } } });
  server = await startMetricsServer({ registry: stack.metrics.registry, port: 0 });
}, 60_000);
afterAll(async () => {
  await server?.close();
  await stack?.stop();
});

const scrape = async (): Promise<{ text: string; samples: Sample[] }> => {
  const res = await fetch(server.url);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const text = await res.text();
  return { text, samples: parseExposition(text) };
};
const healthy = async (vmid: number) => (await stack.api.fleet()).guests.find((g) => g.vmid === vmid)?.healthy === true;

describe('metrics', () => {
  it('a healed crash moves incidents, actions, detection, decision and remediation; guests and PVE requests are counted', async () => {
    // sensing's gauge follows its polling rounds: wait for the round that sees the whole fleet healthy
    const before = await until(async () => {
      const s = (await scrape()).samples;
      return sample(s, 'homeostat_guests', { state: 'running', health: 'healthy' }, 'sum') === 12 ? s : undefined;
    }, 20_000);
    expect(sample(before, 'homeostat_guests', {}, 'sum')).toBe(12);
    expect(sample(before, 'homeostat_pve_up')).toBe(1);
    expect(sample(before, 'homeostat_pve_requests_total', { method: 'GET', status: '200' })).toBeGreaterThan(0);
    expect(sample(before, 'homeostat_pve_request_seconds_count', { method: 'GET' })).toBeGreaterThan(0);
    expect(sample(before, 'homeostat_advisor_up')).toBe(0); // no advisor configured
    const started = sample(before, 'homeostat_actions_total', { verb: 'start', proposer: 'runbook', outcome: 'succeeded' });
    const remediated = sample(before, 'homeostat_remediation_seconds_count', { kind: 'guest' });

    await stack.api.fault('crash', 159);
    await until(async () => !(await healthy(159)), 5000);
    // while it is down: an open incident of kind guest
    await until(async () => sample((await scrape()).samples, 'homeostat_incidents_open', { kind: 'guest' }, 'sum') >= 1 || undefined, 10_000);
    await until(() => healthy(159), 20_000);
    const after = await until(async () => {
      const s = (await scrape()).samples;
      // the incident resolves when sensing sees the guest healthy; the action ends once verified
      const done = sample(s, 'homeostat_remediation_seconds_count', { kind: 'guest' }) > remediated && sample(s, 'homeostat_actions_total', { verb: 'start', proposer: 'runbook', outcome: 'succeeded' }) > started;
      return done ? s : undefined;
    }, 20_000);

    expect(sample(after, 'homeostat_incidents_total', { kind: 'guest' }, 'sum')).toBeGreaterThanOrEqual(1);
    expect(sample(after, 'homeostat_incidents_open', { kind: 'guest' }, 'sum')).toBe(0);
    expect(sample(after, 'homeostat_actions_total', { verb: 'start', proposer: 'runbook', outcome: 'succeeded' })).toBe(started + 1);
    expect(sample(after, 'homeostat_detection_seconds_count', { kind: 'guest' })).toBeGreaterThanOrEqual(1);
    expect(sample(after, 'homeostat_decision_seconds_count')).toBeGreaterThanOrEqual(1);
    const sum = sample(after, 'homeostat_remediation_seconds_sum', { kind: 'guest' });
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThan(60);
    // the crash sits in a bucket no wider than a minute, and +Inf holds every observation
    expect(sample(after, 'homeostat_remediation_seconds_bucket', { kind: 'guest', le: '60' })).toBe(sample(after, 'homeostat_remediation_seconds_count', { kind: 'guest' }));
  }, 60_000);

  it('dead letters are counted by subject family and reason kind', async () => {
    const before = sample((await scrape()).samples, 'homeostat_dead_letters_total', { family: 'guest-event', reason: 'json' });
    stack.bus.nc.publish('fleet.events.guest.node-a.159', new TextEncoder().encode('{not json'));
    await until(async () => sample((await scrape()).samples, 'homeostat_dead_letters_total', { family: 'guest-event', reason: 'json' }) > before || undefined, 10_000);
  });

  it('exports every catalogued metric with bounded labels and the default process metrics', async () => {
    const { text, samples } = await scrape();
    for (const name of METRIC_NAMES) expect(text, name).toContain(`# TYPE ${name} `);
    for (const name of METRIC_NAMES) expect(name).toMatch(/^homeostat_[a-z_]+$/);
    expect(text).toContain('process_cpu_seconds_total');
    expect(text).toContain('nodejs_eventloop_lag_seconds');
    const forbidden = ['vmid', 'incident', 'id', 'node', 'name', 'actionId'];
    for (const s of samples) if (s.name.startsWith('homeostat_')) for (const l of forbidden) expect(Object.keys(s.labels), `${s.name} label ${l}`).not.toContain(l);
  });

  it('passes promtool check metrics (when promtool is installed)', async (t) => {
    const probe = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
    if (probe.error || probe.status !== 0) return t.skip(); // promtool: Debian package `prometheus`
    const { text } = await scrape();
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    // promtool reports lint findings (exit 3) and parse errors (exit 1). Ours must have neither;
    // prom-client's own nodejs_active_*_total gauges are standard names we leave as they are.
    const findings = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.trim() && !/^nodejs_active_\w+_total non-counter/.test(l));
    expect(findings, 'promtool findings').toEqual([]);
    expect([0, 3]).toContain(r.status);
  });

  it('a real Prometheus scrapes the endpoint and answers every dashboard query (when installed)', async (t) => {
    const probe = spawnSync('prometheus', ['--version'], { encoding: 'utf8' });
    if (probe.error || probe.status !== 0) return t.skip(); // Debian package `prometheus`
    const dir = mkdtempSync(join(tmpdir(), 'homeostat-prom-'));
    const port = await freePort();
    writeFileSync(join(dir, 'prometheus.yml'), [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      `rule_files: [${JSON.stringify(resolve('deploy/prometheus/homeostat-rules.yml'))}]`,
      'scrape_configs:',
      `  - { job_name: homeostat, static_configs: [ { targets: ["127.0.0.1:${server.port}"] } ] }`,
    ].join('\n'));
    const prom = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: 'ignore' });
    const query = async (q: string) => {
      const r = await fetch(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(q)}`);
      return (await r.json()) as { status: string; error?: string; data?: { result: { metric: Record<string, string>; value: [number, string] }[] } };
    };
    try {
      await until(async () => (await query('up{job="homeostat"} == 1').catch(() => undefined))?.data?.result.length === 1 || undefined, 30_000, 250);
      await new Promise((r) => setTimeout(r, 4000)); // a few scrapes, so rate() has points
      const dashboard = JSON.parse(readFileSync('deploy/grafana/homeostat.json', 'utf8')) as { panels: { title: string; targets?: { expr: string }[] }[] };
      let withData = 0;
      for (const p of dashboard.panels) {
        for (const target of p.targets ?? []) {
          const r = await query(target.expr.replaceAll('$__rate_interval', '1m'));
          expect(r.status, `${p.title}: ${target.expr}: ${r.error ?? ''}`).toBe('success');
          if (r.data!.result.length) withData++;
        }
      }
      expect(withData).toBeGreaterThanOrEqual(8);
      const byLayer = await query('sum(homeostat_guests)');
      expect(Number(byLayer.data!.result[0].value[1])).toBe(12);
    } finally {
      const exited = new Promise((r) => prom.once('exit', r));
      prom.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

function freePort(): Promise<number> {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => res(port));
    });
  });
}
