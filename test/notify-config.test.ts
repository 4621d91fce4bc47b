// Notifier configuration: the URL grammar (each form, every mistake named with the URL redacted),
// HOMEOSTAT_NOTIFY and its timing overrides, and the manifest's strict `notify:` section.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { loadConfig } from '../agents/mod.ts';
import { notifySettings } from '../agents/notify/mod.ts';
import { isHomeostatError } from '../core/mod.ts';
import { buildFleet } from '../fleet/manifest.ts';
import { parseNotifierList, parseNotifierUrl, redactUrl } from '../fleet/notify-targets.ts';
import { REFERENCE_MANIFEST } from '../fleet/reference-fleet.ts';

const error = (url: string) => {
  const r = parseNotifierUrl(url);
  return 'error' in r ? r.error : undefined;
};

describe('notifier URLs', () => {
  it('each form becomes its target; smtp takes from, to, starttls and credentials', () => {
    expect(parseNotifierUrl('https://hooks.example/x')).toEqual({ target: { kind: 'webhook', name: 'webhook hooks.example', url: 'https://hooks.example/x' } });
    expect(parseNotifierUrl('smtp://u%40x:p%2Fw@mail.example:587/?from=h@x.example&to=a@x.example&to=b@x.example&starttls=required')).toEqual({
      target: { kind: 'smtp', name: 'smtp mail.example:587', host: 'mail.example', port: 587, secure: false, starttls: 'required', insecure: false, user: 'u@x', pass: 'p/w', from: 'h@x.example', to: ['a@x.example', 'b@x.example'] },
    });
    expect(parseNotifierUrl('smtps://mail.example/?from=h@x.example&to=a@x.example')).toMatchObject({ target: { port: 465, secure: true, starttls: 'off' } });
    expect(parseNotifierUrl('smtp://mail.example/?from=h@x.example&to=a@x.example')).toMatchObject({ target: { port: 25, starttls: 'auto' } });
  });

  it('mistakes are named, and never show a password, token, topic or webhook path', () => {
    expect(error('ftp://x/y')).toMatch(/unsupported scheme ftp:\/\/ \(expected http\(s\):\/\/, ntfy\(s\):\/\/, slack:\/\/, smtp\(s\):\/\/\)/);
    expect(error('ntfy://ntfy.sh/')).toMatch(/^ntfy:\/\/ntfy\.sh: expected ntfy:\/\/host\/topic/);
    expect(error('ntfy://ntfy.sh/a?priority=5')).toMatch(/unknown parameter \?priority/);
    expect(error('slack://hooks.slack.com')).toMatch(/expected slack:\/\/host\/path/);
    expect(error('smtp://u:topsecret@mail.example/?to=a@x.example')).toBe('smtp://u:***@mail.example/…: expected ?from=ADDRESS');
    expect(error('smtp://mail.example/?from=h@x.example&to=nobody')).toMatch(/\?to: "nobody" is not an e-mail address/);
    expect(error('smtp://mail.example/?from=h@x.example&to=a@x.example&starttls=maybe')).toMatch(/expected auto, required or off/);
    expect(error('not a url')).toMatch(/not a URL/);
    expect(redactUrl('slack://hooks.slack.com/services/T/B/SECRET')).toBe('slack://hooks.slack.com/…');
    expect(redactUrl('ntfy://ntfy.sh/my-private-topic?token=tk_1')).toBe('ntfy://ntfy.sh/…');
  });

  it('a list names the notifier at fault; two of one kind on one host get distinct names', () => {
    expect(parseNotifierList(['https://a.example/1', 'ntfys://ntfy.sh/'])).toEqual({ error: expect.stringMatching(/^notifier 2 \(ntfys:\/\/ntfy\.sh: /) as unknown });
    const r = parseNotifierList(['https://a.example/1', 'https://a.example/2']);
    expect('targets' in r && r.targets.map((t) => t.name)).toEqual(['webhook a.example', 'webhook a.example #2']);
  });
});

describe('HOMEOSTAT_NOTIFY and the manifest', () => {
  it('env URLs replace the manifest\'s; env timings override the manifest, which overrides the defaults', () => {
    const fleet = buildFleet({ ...structuredClone(REFERENCE_MANIFEST), notify: { urls: ['https://from-manifest.example/h'], groupWaitMs: 2000 } });
    const fromManifest = notifySettings(loadConfig({}), fleet);
    expect(fromManifest).toMatchObject({ from: 'manifest', targets: [{ name: 'webhook from-manifest.example' }], timing: { groupWaitMs: 2000, groupIntervalMs: 120_000, repeatIntervalMs: 14_400_000, sendResolved: true } });
    const fromEnv = notifySettings(loadConfig({ HOMEOSTAT_NOTIFY: ' https://a.example/h , ntfys://ntfy.sh/t ', HOMEOSTAT_NOTIFY_GROUP_WAIT_MS: '500', HOMEOSTAT_NOTIFY_REPEAT_INTERVAL_MS: '60000' }), fleet);
    expect(fromEnv.from).toBe('HOMEOSTAT_NOTIFY');
    expect(fromEnv.targets.map((t) => t.kind)).toEqual(['webhook', 'ntfy']);
    expect(fromEnv.timing).toMatchObject({ groupWaitMs: 500, groupIntervalMs: 120_000, repeatIntervalMs: 60_000 });
    expect(notifySettings(loadConfig({}), buildFleet(structuredClone(REFERENCE_MANIFEST))).targets).toEqual([]);
  });

  it('a bad HOMEOSTAT_NOTIFY is one config error naming the notifier, without the secret', () => {
    const e = (() => {
      try {
        loadConfig({ HOMEOSTAT_NOTIFY: 'https://ok.example/h,smtp://u:hunter2@mail.example/?to=a@x.example' });
      } catch (x) {
        return x;
      }
    })();
    expect(isHomeostatError(e, 'HOMEOSTAT_ERR_CONFIG')).toBe(true);
    expect((e as Error).message).toBe('HOMEOSTAT_NOTIFY: notifier 2 (smtp://u:***@mail.example/…: expected ?from=ADDRESS)');
  });

  it('the manifest\'s notify section is strict: unknown keys get a "did you mean", bad URLs name their path', () => {
    const bad = (notify: unknown) => {
      try {
        buildFleet({ ...structuredClone(REFERENCE_MANIFEST), notify });
      } catch (e) {
        return (e as Error).message;
      }
      return undefined;
    };
    expect(bad({ url: ['https://a.example'] })).toMatch(/notify: unknown key "url" — did you mean "urls"\?/);
    expect(bad({ groupWait: 1000 })).toMatch(/did you mean "groupWaitMs"\?/);
    expect(bad({ urls: ['https://a.example', 'gopher://x'] })).toMatch(/notify\.urls\[1\]: gopher:\/\/x: unsupported scheme/);
  });

  it('fleet.example.yaml\'s commented notify section, uncommented, is valid and names every key', () => {
    const text = readFileSync('fleet.example.yaml', 'utf8');
    const block = text.slice(text.indexOf('# notify:')).split('\n').map((l) => l.replace(/^# ?/, '')).join('\n');
    const notify = (parseYaml(block) as { notify: Record<string, unknown> }).notify;
    expect(Object.keys(notify).sort()).toEqual(['groupIntervalMs', 'groupWaitMs', 'repeatIntervalMs', 'sendResolved', 'urls']);
    const fleet = buildFleet({ ...structuredClone(REFERENCE_MANIFEST), notify });
    expect(notifySettings(loadConfig({}), fleet).targets.map((t) => t.kind)).toEqual(['webhook', 'ntfy', 'slack', 'smtp']);
  });

  it('CLI: a bad notifier URL stops start-up with one line naming it, exit 2', () => {
    const dir = mkdtempSync(join(tmpdir(), 'homeostat-notify-'));
    try {
      const r = spawnSync(process.execPath, ['bin/homeostat.js', 'up', '--sim', '--data-dir', dir, '--nats-port', '0', '--sim-port', '0'], {
        encoding: 'utf8', timeout: 30_000, env: { ...process.env, HOMEOSTAT_NOTIFY: 'ntfy://u:pw123@ntfy.example/' },
      });
      expect(r.status).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/HOMEOSTAT_ERR_CONFIG: HOMEOSTAT_NOTIFY: notifier 1 \(ntfy:\/\/u:\*\*\*@ntfy\.example: expected ntfy:\/\/host\/topic/);
      expect(r.stderr).not.toContain('pw123');
      const manifest = join(dir, 'fleet.yaml');
      writeFileSync(manifest, 'nodes: [{name: pve1}]\nguests: []\nnotify:\n  urls: ["slack://hooks.slack.com"]\n');
      const v = spawnSync(process.execPath, ['bin/homeostat.js', 'fleet', 'validate', manifest], { encoding: 'utf8', timeout: 30_000 });
      expect(v.status).toBe(2);
      expect(v.stderr + v.stdout).toMatch(/notify\.urls\[0\]: slack:\/\/hooks\.slack\.com: expected slack:\/\/host\/path/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
