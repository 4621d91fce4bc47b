// A small SMTP client (RFC 5321) on node:net/tls, enough to hand one message to a relay: EHLO,
// STARTTLS when offered (or required), AUTH PLAIN or LOGIN when the URL has credentials, MAIL,
// RCPT, DATA, QUIT. One session per message; a timeout bounds the whole session.
import { randomUUID } from 'node:crypto';
import { isIP, connect as netConnect, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { connect as tlsConnect } from 'node:tls';
import type { SmtpTarget } from '../../fleet/notify-targets.ts';
import { headerValue } from './render.ts';

export class SmtpError extends Error {}

interface Reply { code: number; lines: string[] }

/** Reads replies (multi-line `250-…` then `250 …`) off a socket that may be upgraded to TLS. */
class Session {
  private buf = '';
  private partial: string[] = [];
  private readonly queue: Reply[] = [];
  private waiter?: { resolve(r: Reply): void; reject(e: Error): void };
  private failure?: Error;
  socket: Socket;

  constructor(socket: Socket) {
    this.socket = socket;
    this.attach(socket);
  }

  private readonly onData = (chunk: Buffer) => {
    this.buf += chunk.toString('utf8');
    for (let i = this.buf.indexOf('\n'); i >= 0; i = this.buf.indexOf('\n')) {
      const line = this.buf.slice(0, i).replace(/\r$/, '');
      this.buf = this.buf.slice(i + 1);
      const m = /^(\d{3})([ -]?)(.*)$/.exec(line);
      if (!m) return this.fail(new SmtpError(`not an SMTP reply: ${JSON.stringify(line.slice(0, 80))}`));
      this.partial.push(m[3]);
      if (m[2] === '-') continue;
      const r = { code: Number(m[1]), lines: this.partial };
      this.partial = [];
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = undefined;
        w.resolve(r);
      } else this.queue.push(r);
    }
  };

  readonly fail = (e: Error) => {
    this.failure ??= e;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.reject(this.failure);
    }
  };

  private readonly onClose = () => this.fail(new SmtpError('the server closed the connection'));

  attach(s: Socket): void {
    s.on('data', this.onData);
    s.on('error', this.fail);
    s.on('close', this.onClose);
  }

  detach(s: Socket): void {
    s.off('data', this.onData);
    s.off('close', this.onClose);
  }

  read(): Promise<Reply> {
    const r = this.queue.shift();
    if (r) return Promise.resolve(r);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** Send one command; its reply must have one of `ok` codes. `shown`: what an error calls it (never a secret). */
  async command(line: string, ok: number[], shown = line): Promise<Reply> {
    this.socket.write(`${line}\r\n`);
    const r = await this.read();
    if (!ok.includes(r.code)) throw new SmtpError(`${shown}: ${r.code} ${r.lines.join(' ').slice(0, 200)}`);
    return r;
  }
}

function connectSocket(t: SmtpTarget, made: (s: Socket) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s: Socket = t.secure
      ? tlsConnect({ host: t.host, port: t.port, servername: isIP(t.host) ? undefined : t.host, rejectUnauthorized: !t.insecure }, () => resolve(s))
      : netConnect({ host: t.host, port: t.port }, () => resolve(s));
    made(s);
    s.once('error', reject);
  });
}

function upgrade(s: Socket, t: SmtpTarget): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const secure = tlsConnect({ socket: s, servername: isIP(t.host) ? undefined : t.host, rejectUnauthorized: !t.insecure }, () => resolve(secure));
    secure.once('error', reject);
  });
}

/** Extensions from an EHLO reply: `STARTTLS`, `AUTH` → its mechanisms. */
function extensions(r: Reply): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const l of r.lines.slice(1)) {
    const [k, ...rest] = l.trim().split(/[\s=]+/);
    if (k) out.set(k.toUpperCase(), rest.map((x) => x.toUpperCase()));
  }
  return out;
}

const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');

/** The message: headers (one line each, RFC 2047 where needed) and a base64 UTF-8 body. */
export function buildMessage(t: Pick<SmtpTarget, 'from' | 'to'>, m: { subject: string; text: string; headers?: Record<string, string> }, now = new Date()): string {
  const body = b64(m.text.replace(/\r?\n/g, '\r\n')).replace(/.{1,76}/g, '$&\r\n');
  return [
    `From: ${t.from}`,
    `To: ${t.to.join(', ')}`,
    `Subject: ${headerValue(m.subject)}`,
    `Date: ${now.toUTCString()}`,
    `Message-ID: <${randomUUID()}@homeostat>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: base64',
    ...Object.entries(m.headers ?? {}).map(([k, v]) => `${k}: ${headerValue(v)}`),
    '',
    body,
  ].join('\r\n');
}

function clientName(given?: string): string {
  const n = (given ?? hostname()).replace(/[^A-Za-z0-9.-]/g, '');
  return n || 'homeostat.localdomain';
}

async function converse(s: Session, t: SmtpTarget, message: string, name: string): Promise<void> {
  const greeting = await s.read();
  if (greeting.code !== 220) throw new SmtpError(`greeting: ${greeting.code} ${greeting.lines.join(' ').slice(0, 200)}`);
  let ext = extensions(await s.command(`EHLO ${name}`, [250], 'EHLO'));
  if (!t.secure && t.starttls !== 'off' && ext.has('STARTTLS')) {
    await s.command('STARTTLS', [220]);
    s.detach(s.socket);
    s.socket = await upgrade(s.socket, t);
    s.attach(s.socket);
    ext = extensions(await s.command(`EHLO ${name}`, [250], 'EHLO'));
  } else if (t.starttls === 'required') {
    throw new SmtpError('the server does not offer STARTTLS (?starttls=required)');
  }
  if (t.user !== undefined) {
    const mechs = ext.get('AUTH') ?? [];
    if (mechs.includes('PLAIN')) {
      await s.command(`AUTH PLAIN ${b64(`\0${t.user}\0${t.pass ?? ''}`)}`, [235], 'AUTH PLAIN');
    } else if (mechs.includes('LOGIN')) {
      await s.command('AUTH LOGIN', [334]);
      await s.command(b64(t.user), [334], 'AUTH LOGIN (user)');
      await s.command(b64(t.pass ?? ''), [235], 'AUTH LOGIN (password)');
    } else {
      throw new SmtpError(`the server offers no AUTH PLAIN or LOGIN (offers: ${mechs.join(' ') || 'none'})`);
    }
  }
  await s.command(`MAIL FROM:<${t.from}>`, [250]);
  for (const to of t.to) await s.command(`RCPT TO:<${to}>`, [250, 251]);
  await s.command('DATA', [354]);
  // dot-stuffing: a line starting with "." gets another one
  await s.command(`${message.replace(/^\./gm, '..')}\r\n.`, [250], 'DATA (message)');
  await s.command('QUIT', [221]).catch(() => undefined);
}

/** Hand one message to the target's relay. Throws SmtpError (or a socket error) on failure. */
export async function sendMail(t: SmtpTarget, m: { subject: string; text: string; headers?: Record<string, string> }, o: { timeoutMs?: number; clientName?: string } = {}): Promise<void> {
  const timeoutMs = o.timeoutMs ?? 20_000;
  let session: Session | undefined;
  let raw: Socket | undefined;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new SmtpError(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([
      (async () => {
        const socket = await connectSocket(t, (x) => (raw = x));
        session = new Session(socket);
        await converse(session, t, buildMessage(t, m), clientName(o.clientName));
      })(),
      deadline,
    ]);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw err instanceof SmtpError ? err : new SmtpError(err.code ?? err.message);
  } finally {
    clearTimeout(timer);
    session?.socket.destroy();
    raw?.destroy();
  }
}
