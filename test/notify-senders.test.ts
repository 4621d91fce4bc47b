// Each notifier against a real local receiver: an HTTP server for the generic webhook, ntfy and
// Slack; an SMTP server speaking the protocol (STARTTLS, AUTH PLAIN/LOGIN) for e-mail.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSender, type Notification } from '../agents/notify/mod.ts';
import { parseNotifierUrl, type NotifierTarget } from '../fleet/notify-targets.ts';
import { generateSelfSignedCert } from '../fleet/sim/cert.ts';
import { startHttpReceiver, type HttpReceiver } from './helpers/http-receiver.ts';
import { startSmtpServer, type TestSmtpServer } from './helpers/smtp-server.ts';

const target = (url: string): NotifierTarget => {
  const r = parseNotifierUrl(url);
  if ('error' in r) throw new Error(r.error);
  return r.target;
};

const notification = (over: Partial<Notification> = {}): Notification => ({
  id: '01JTEST', groupKey: 'incident:inc-1', status: 'firing', severity: 'warning', title: 'Approval waiting: start homeassistant (200)',
  repeat: false, fleet: 'reference', sentAt: '2026-11-30T23:00:00.000Z',
  items: [{
    key: 'approval:act-1', kind: 'approval', status: 'firing', oneShot: false, announced: false, severity: 'warning',
    title: 'Approval waiting: start homeassistant (200)', text: 'runbook proposes to start homeassistant (200) on node-c: <crashed> & down',
    hint: 'homeostat approve act-1', actionId: 'act-1', incidentId: 'inc-1', vmid: 200, node: 'node-c', at: '2026-11-30T22:59:58.000Z',
  }],
  ...over,
});

let http: HttpReceiver;
beforeAll(async () => {
  http = await startHttpReceiver();
});
afterAll(async () => {
  await http.close();
});

describe('HTTP notifiers against a local receiver', () => {
  it('generic webhook: the notification as JSON, credentials from the URL as Basic auth', async () => {
    const t = target(`http://ops:s3cret@127.0.0.1:${http.port}/hooks/homeostat?x=1&name=ops-hook`);
    expect(t.name).toBe('ops-hook');
    await createSender(t).send(notification());
    const req = http.requests.at(-1)!;
    expect(req.method).toBe('POST');
    expect(req.url).toBe('/hooks/homeostat?x=1');
    expect(req.headers['content-type']).toBe('application/json');
    expect(req.headers.authorization).toBe(`Basic ${Buffer.from('ops:s3cret').toString('base64')}`);
    const body = JSON.parse(req.body) as Record<string, unknown> & { items: { actionId: string; hint: string }[] };
    expect(body).toMatchObject({ version: 1, source: 'homeostat', status: 'firing', groupKey: 'incident:inc-1', fleet: 'reference', headline: '[FIRING] Approval waiting: start homeassistant (200)' });
    expect(body.items[0]).toMatchObject({ actionId: 'act-1', hint: 'homeostat approve act-1' });
    expect(body.text).toContain('homeostat approve act-1');
  });

  it('ntfy: POST to the topic with Title, Priority and Tags headers; token as Bearer; non-ASCII title RFC 2047', async () => {
    const t = target(`ntfy://127.0.0.1:${http.port}/homelab-alerts?token=tk_abc`);
    expect(t).toMatchObject({ kind: 'ntfy', url: `http://127.0.0.1:${http.port}/homelab-alerts` });
    await createSender(t).send(notification({ severity: 'critical', title: 'Guest café is flapping' }));
    const req = http.requests.at(-1)!;
    expect(req.url).toBe('/homelab-alerts');
    expect(req.headers.authorization).toBe('Bearer tk_abc');
    expect(req.headers.priority).toBe('5');
    expect(req.headers.tags).toBe('rotating_light,homeostat');
    const title = String(req.headers.title);
    expect(title).toMatch(/^=\?UTF-8\?B\?.+\?=$/);
    expect(Buffer.from(title.slice(10, -2), 'base64').toString('utf8')).toBe('[FIRING] Guest café is flapping');
    expect(req.body).toContain('homeostat approve act-1');
    // resolved: low priority, a check mark
    await createSender(t).send(notification({ status: 'resolved' }));
    expect(http.requests.at(-1)!.headers).toMatchObject({ priority: '2', tags: 'white_check_mark,homeostat' });
  });

  it('ntfys:// and ?tls=1 mean https; user:pass is Basic auth', () => {
    expect(target('ntfys://ntfy.sh/alerts')).toMatchObject({ url: 'https://ntfy.sh/alerts' });
    expect(target('ntfy://ntfy.example:8443/alerts?tls=1')).toMatchObject({ url: 'https://ntfy.example:8443/alerts' });
    expect(target('ntfy://me:pw@ntfy.example/alerts')).toMatchObject({ authorization: `Basic ${Buffer.from('me:pw').toString('base64')}` });
  });

  it('slack: slack://host/path posts {text, blocks} to https://host/path (?tls=0: http), mrkdwn escaped', async () => {
    expect(target('slack://hooks.slack.com/services/T000/B000/XXXX')).toMatchObject({ kind: 'slack', url: 'https://hooks.slack.com/services/T000/B000/XXXX', name: 'slack hooks.slack.com' });
    await createSender(target(`slack://127.0.0.1:${http.port}/services/T1/B1/abc?tls=0`)).send(notification());
    const req = http.requests.at(-1)!;
    expect(req.url).toBe('/services/T1/B1/abc');
    const body = JSON.parse(req.body) as { text: string; blocks: { type: string; text?: { text: string } }[] };
    expect(body.text).toBe(':warning: [FIRING] Approval waiting: start homeassistant (200)');
    expect(body.blocks.map((b) => b.type)).toEqual(['header', 'section', 'context']);
    expect(body.blocks[1].text!.text).toContain('&lt;crashed&gt; &amp; down');
    expect(body.blocks[1].text!.text).toContain('`homeostat approve act-1`');
  });

  it('a failing receiver is an error with the status, never the URL', async () => {
    http.status = 500;
    try {
      const t = target(`http://127.0.0.1:${http.port}/secret-path-token`);
      const err = await createSender(t).send(notification()).then(() => undefined, (e: Error) => e);
      expect(err?.message).toMatch(/^HTTP 500/);
      expect(err?.message).not.toContain('secret-path-token');
    } finally {
      http.status = 200;
    }
    const gone = await startHttpReceiver();
    await gone.close();
    const refused = await createSender(target(`http://127.0.0.1:${gone.port}/x`)).send(notification()).then(() => undefined, (e: Error) => e);
    expect(refused?.message).toMatch(/POST failed: ECONNREFUSED/);
  });
});

describe('e-mail over SMTP against a local SMTP server', () => {
  let plain: TestSmtpServer;
  let loginOnly: TestSmtpServer;
  let tls: TestSmtpServer;
  beforeAll(async () => {
    const cert = await generateSelfSignedCert('127.0.0.1');
    plain = await startSmtpServer({ users: { alice: 'pa ss:word' } });
    loginOnly = await startSmtpServer({ users: { bob: 'hunter2' }, mechs: ['LOGIN'] });
    tls = await startSmtpServer({ users: { carol: 'tls-pass' }, tls: { key: cert.keyPem, cert: cert.certPem } });
  }, 30_000);
  afterAll(async () => {
    await Promise.all([plain?.close(), loginOnly?.close(), tls?.close()]);
  });

  const decodeBody = (data: string) => Buffer.from(data.split('\r\n\r\n').slice(1).join('').replace(/\r\n/g, ''), 'base64').toString('utf8');

  it('AUTH PLAIN, MAIL/RCPT for every recipient, a MIME message with the notification', async () => {
    const t = target(`smtp://alice:${encodeURIComponent('pa ss:word')}@127.0.0.1:${plain.port}/?from=homeostat@lab.example&to=ops@lab.example,oncall@lab.example&starttls=off`);
    expect(t.name).toBe(`smtp 127.0.0.1:${plain.port}`);
    await createSender(t).send(notification({ title: 'Ünïcode guest down' }));
    const m = plain.messages.at(-1)!;
    expect(m).toMatchObject({ from: 'homeostat@lab.example', to: ['ops@lab.example', 'oncall@lab.example'], user: 'alice', tls: false });
    expect(plain.commands.some((c) => c.startsWith('AUTH PLAIN '))).toBe(true);
    expect(m.data).toMatch(/^From: homeostat@lab\.example\r\nTo: ops@lab\.example, oncall@lab\.example\r\nSubject: =\?UTF-8\?B\?/);
    const subject = /Subject: =\?UTF-8\?B\?(.+)\?=/.exec(m.data)![1];
    expect(Buffer.from(subject, 'base64').toString('utf8')).toBe('[homeostat] [FIRING] Ünïcode guest down');
    expect(m.data).toContain('X-Homeostat-Group: incident:inc-1');
    expect(decodeBody(m.data)).toContain('homeostat approve act-1');
  });

  it('AUTH LOGIN when the server offers only LOGIN; a wrong password fails without showing it', async () => {
    await createSender(target(`smtp://bob:hunter2@127.0.0.1:${loginOnly.port}/?from=h@x.example&to=b@x.example`)).send(notification());
    expect(loginOnly.messages.at(-1)).toMatchObject({ user: 'bob' });
    expect(loginOnly.commands).toContain('AUTH LOGIN');
    const err = await createSender(target(`smtp://bob:wrong@127.0.0.1:${loginOnly.port}/?from=h@x.example&to=b@x.example`)).send(notification()).then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(/AUTH LOGIN \(password\): 535/);
    expect(err?.message).not.toContain('wrong');
  });

  it('STARTTLS when offered: the message and the credentials go over TLS', async () => {
    await createSender(target(`smtp://carol:tls-pass@127.0.0.1:${tls.port}/?from=h@x.example&to=c@x.example&insecure=1`)).send(notification());
    expect(tls.messages.at(-1)).toMatchObject({ user: 'carol', tls: true });
    expect(tls.commands.indexOf('STARTTLS')).toBeLessThan(tls.commands.findIndex((c) => c.startsWith('AUTH')));
    // the self-signed certificate is refused unless ?insecure=1
    const err = await createSender(target(`smtp://carol:tls-pass@127.0.0.1:${tls.port}/?from=h@x.example&to=c@x.example`)).send(notification()).then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(/SELF_SIGNED|self.signed|certificate/i);
  });

  it('?starttls=required refuses a server without it; no AUTH offered is an error before MAIL', async () => {
    const err = await createSender(target(`smtp://alice:x@127.0.0.1:${plain.port}/?from=h@x.example&to=a@x.example&starttls=required`)).send(notification()).then(() => undefined, (e: Error) => e);
    expect(err?.message).toMatch(/does not offer STARTTLS/);
    const none = await startSmtpServer();
    try {
      const e2 = await createSender(target(`smtp://u:p@127.0.0.1:${none.port}/?from=h@x.example&to=a@x.example`)).send(notification()).then(() => undefined, (e: Error) => e);
      expect(e2?.message).toMatch(/offers no AUTH PLAIN or LOGIN/);
      // without credentials it just sends
      await createSender(target(`smtp://127.0.0.1:${none.port}/?from=h@x.example&to=a@x.example`)).send(notification());
      expect(none.messages).toHaveLength(1);
    } finally {
      await none.close();
    }
  });
});
