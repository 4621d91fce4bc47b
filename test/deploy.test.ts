// deploy/: the Prometheus rules and config, the Alertmanager route, the Grafana dashboard and the
// compose profile `observability`. promtool/amtool checks run where the Debian packages
// `prometheus` / `prometheus-alertmanager` are installed; the metric-name checks always run.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { METRIC_NAMES } from '../agents/mod.ts';

const RULES = 'deploy/prometheus/homeostat-rules.yml';
const DASHBOARD = 'deploy/grafana/homeostat.json';
const tool = (cmd: string) => {
  const r = spawnSync(cmd, ['--version'], { encoding: 'utf8' });
  return !r.error && r.status === 0;
};
const run = (cmd: string, args: string[], cwd?: string) => spawnSync(cmd, args, { encoding: 'utf8', cwd });

interface RuleFile { groups: { name: string; rules: { record?: string; alert?: string; expr: string; labels?: Record<string, string> }[] }[] }
const rules = parse(readFileSync(RULES, 'utf8')) as RuleFile;
const recorded = new Set(rules.groups.flatMap((g) => g.rules.map((r) => r.record).filter((r): r is string => !!r)));
interface Panel { title: string; targets?: { expr: string }[] }
const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { uid: string; panels: Panel[] };

/** Series names a PromQL expression reads: ours start with homeostat_ / homeostat:. */
const seriesIn = (expr: string) => [...expr.matchAll(/\b(homeostat[_:][a-zA-Z0-9_:]*)/g)].map((m) => m[1]);
const EXPORTED = new Set(METRIC_NAMES.flatMap((n) => [n, `${n}_bucket`, `${n}_sum`, `${n}_count`]));
const known = (name: string) => EXPORTED.has(name) || recorded.has(name);

describe('deploy/', () => {
  it('every dashboard query names metrics homeostat exports', () => {
    const panels = dashboard.panels.filter((p) => p.targets?.length);
    expect(panels.length).toBeGreaterThanOrEqual(10);
    for (const p of panels) {
      for (const t of p.targets!) {
        const names = seriesIn(t.expr);
        expect(names.length, `${p.title}: ${t.expr}`).toBeGreaterThan(0);
        for (const n of names) expect(known(n), `${p.title}: ${n} is not exported`).toBe(true);
      }
    }
    // what the issue asks the dashboard to show
    const all = panels.flatMap((p) => p.targets!.map((t) => t.expr)).join('\n');
    for (const m of ['homeostat_guests', 'homeostat_remediation_seconds_bucket', 'homeostat_incidents_total', 'homeostat_actions_total', 'homeostat_dead_letters_total', 'homeostat_advisor_request_seconds_bucket']) expect(all).toContain(m);
  });

  it('every rule names metrics homeostat exports (or records itself), and the asked-for alerts exist', () => {
    for (const g of rules.groups) for (const r of g.rules) for (const n of seriesIn(r.expr)) expect(known(n), `${r.record ?? r.alert}: ${n}`).toBe(true);
    const alerts = rules.groups.flatMap((g) => g.rules.map((r) => r.alert)).filter(Boolean);
    for (const a of ['HomeostatRemediationSlow', 'HomeostatFlapping', 'HomeostatDeadLettersGrowing', 'HomeostatAdvisorDown', 'HomeostatPveUnreachable', 'HomeostatApprovalsWaiting']) expect(alerts).toContain(a);
    // the Alertmanager route keeps homeostat's own alerts away from homeostat's receiver by this label
    for (const g of rules.groups) for (const r of g.rules) if (r.alert) expect(r.labels?.source, r.alert).toBe('homeostat');
  });

  it('promtool: rules and config check, the rule unit tests pass', (t) => {
    if (!tool('promtool')) return t.skip(); // Debian package `prometheus`
    const check = run('promtool', ['check', 'rules', RULES]);
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const unit = run('promtool', ['test', 'rules', 'homeostat-rules.test.yml'], 'deploy/prometheus');
    expect(unit.status, unit.stdout + unit.stderr).toBe(0);
    const config = run('promtool', ['check', 'config', 'prometheus.yml'], 'deploy/prometheus');
    expect(config.status, config.stdout + config.stderr).toBe(0);
  });

  it('the Alertmanager example routes to the sensing receiver, and amtool accepts it', (t) => {
    const am = parse(readFileSync('deploy/alertmanager/alertmanager.yml', 'utf8')) as { route: { receiver: string; routes: { receiver: string; matchers: string[] }[] }; receivers: { name: string; webhook_configs?: { url: string }[] }[] };
    const def = am.receivers.find((r) => r.name === am.route.receiver)!;
    expect(new URL(def.webhook_configs![0].url).pathname).toBe('/api/v2/alerts');
    const compose = parse(readFileSync('compose.yaml', 'utf8'), { merge: true }) as { services: Record<string, { command?: string[] }> };
    const sensing = compose.services.sensing.command!;
    const url = new URL(def.webhook_configs![0].url);
    expect(url.hostname).toBe('sensing');
    expect(sensing[sensing.indexOf('--alertmanager-port') + 1]).toBe(url.port);
    expect(am.route.routes.some((r) => r.receiver !== am.route.receiver && r.matchers.includes('source="homeostat"'))).toBe(true);
    if (!tool('amtool')) return t.skip(); // Debian package `prometheus-alertmanager`
    const r = run('amtool', ['check-config', 'deploy/alertmanager/alertmanager.yml']);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it('compose profile observability: Prometheus, Alertmanager and Grafana wired to homeostat', () => {
    type Svc = { profiles?: string[]; volumes?: string[]; command?: string[] };
    const compose = parse(readFileSync('compose.yaml', 'utf8'), { merge: true }) as { services: Record<string, Svc> };
    for (const s of ['prometheus', 'alertmanager', 'grafana']) {
      expect(compose.services[s]?.profiles, s).toEqual(['observability']);
      for (const v of compose.services[s].volumes ?? []) {
        const host = v.split(':')[0];
        if (host.startsWith('./')) expect(existsSync(host), `${s} mounts ${host}`).toBe(true);
      }
    }
    // Prometheus scrapes a metrics endpoint on every agent, on the port the agent serves
    const prom = parse(readFileSync('deploy/prometheus/prometheus.yml', 'utf8')) as { rule_files: string[]; scrape_configs: { static_configs: { targets: string[] }[] }[]; alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] } };
    const targets = prom.scrape_configs.flatMap((c) => c.static_configs.flatMap((s) => s.targets));
    for (const a of ['sensing', 'analysis', 'decision', 'action', 'operator', 'workflows']) {
      const cmd = compose.services[a].command!;
      const port = cmd[cmd.indexOf('--metrics-port') + 1];
      expect(cmd).toContain('--metrics-port');
      expect(targets).toContain(`${a}:${port}`);
    }
    for (const f of prom.rule_files) expect(existsSync(join(dirname('deploy/prometheus/prometheus.yml'), f))).toBe(true);
    expect(prom.alerting.alertmanagers[0].static_configs[0].targets[0]).toMatch(/^alertmanager:/);
  });
});
