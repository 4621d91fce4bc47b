// A real SMTP server for tests, on node:net, speaking the protocol: EHLO with its extensions,
// STARTTLS (when given a certificate), AUTH PLAIN and LOGIN, MAIL/RCPT/DATA with dot-unstuffing,
// RSET, NOOP, QUIT. It keeps every message it accepted.
import { createServer, type Server, type Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

export interface Received {
  from: string;
  to: string[];
  /** The message as sent after DATA (headers and body), dot-unstuffed, CRLF line ends. */
  data: string;
  user?: string;
  tls: boolean;
}

export interface SmtpServerOptions {
  /** Accepted credentials; with them, MAIL needs AUTH first. */
  users?: Record<string, string>;
  /** Mechanisms advertised (default PLAIN LOGIN). */
  mechs?: string[];
  /** Offer STARTTLS with this key and certificate. */
  tls?: { key: string; cert: string };
}

export interface TestSmtpServer {
  port: number;
  messages: Received[];
  /** Every command line received (AUTH payloads included), for protocol assertions. */
  commands: string[];
  close(): Promise<void>;
}

const b64 = (s: string) => Buffer.from(s, 'base64').toString('utf8');

export async function startSmtpServer(o: SmtpServerOptions = {}): Promise<TestSmtpServer> {
  const messages: Received[] = [];
  const commands: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((raw) => {
    sockets.add(raw);
    raw.on('close', () => sockets.delete(raw));
    raw.on('error', () => undefined);
    let socket: Socket = raw;
    let secured = false;
    let user: string | undefined;
    let env: { from: string; to: string[] } | undefined;
    let data: string[] | undefined;
    let next: ((line: string) => void) | undefined;
    let buf = '';
    const say = (line: string) => socket.write(`${line}\r\n`);
    const onLine = (line: string) => {
      if (data) {
        if (line === '.') {
          messages.push({ from: env!.from, to: env!.to, data: data.join('\r\n'), user, tls: secured });
          data = undefined;
          env = undefined;
          say('250 2.0.0 queued');
        } else data.push(line.startsWith('..') ? line.slice(1) : line);
        return;
      }
      commands.push(line);
      if (next) {
        const n = next;
        next = undefined;
        n(line);
        return;
      }
      const [verb, ...rest] = line.split(' ');
      const arg = rest.join(' ');
      switch (verb.toUpperCase()) {
        case 'EHLO': {
          const ext = ['8BITMIME'];
          if (o.tls && !secured) ext.push('STARTTLS');
          if (o.users) ext.push(`AUTH ${(o.mechs ?? ['PLAIN', 'LOGIN']).join(' ')}`);
          say(`250-test.local greets ${arg}`);
          ext.forEach((e, i) => say(`250${i === ext.length - 1 ? ' ' : '-'}${e}`));
          return;
        }
        case 'HELO':
          return say('250 test.local');
        case 'STARTTLS': {
          if (!o.tls || secured) return say('502 5.5.1 not offered');
          say('220 2.0.0 ready to start TLS');
          socket.removeListener('data', onData);
          const t = new TLSSocket(socket, { isServer: true, key: o.tls.key, cert: o.tls.cert });
          t.on('error', () => undefined);
          t.on('data', onData);
          socket = t;
          secured = true;
          user = undefined;
          return;
        }
        case 'AUTH': {
          const [mech, initial] = arg.split(' ');
          const check = (u: string, p: string) => {
            if (o.users?.[u] === p) {
              user = u;
              say('235 2.7.0 authenticated');
            } else say('535 5.7.8 authentication failed');
          };
          if (!(o.mechs ?? ['PLAIN', 'LOGIN']).includes(mech?.toUpperCase())) return say('504 5.5.4 mechanism not supported');
          if (mech.toUpperCase() === 'PLAIN') {
            const take = (payload: string) => {
              const [, u, p] = b64(payload).split('\0');
              check(u, p);
            };
            if (initial) return take(initial);
            say('334 ');
            next = take;
            return;
          }
          say(`334 ${Buffer.from('Username:').toString('base64')}`);
          next = (u64) => {
            say(`334 ${Buffer.from('Password:').toString('base64')}`);
            next = (p64) => check(b64(u64), b64(p64));
          };
          return;
        }
        case 'MAIL': {
          if (o.users && !user) return say('530 5.7.0 authentication required');
          const m = /^FROM:<([^>]*)>/i.exec(arg);
          if (!m) return say('501 5.5.4 syntax');
          env = { from: m[1], to: [] };
          return say('250 2.1.0 ok');
        }
        case 'RCPT': {
          const m = /^TO:<([^>]+)>/i.exec(arg);
          if (!env || !m) return say('503 5.5.1 need MAIL');
          env.to.push(m[1]);
          return say('250 2.1.5 ok');
        }
        case 'DATA':
          if (!env?.to.length) return say('503 5.5.1 need RCPT');
          data = [];
          return say('354 end with <CRLF>.<CRLF>');
        case 'RSET':
          env = undefined;
          return say('250 ok');
        case 'NOOP':
          return say('250 ok');
        case 'QUIT':
          say('221 2.0.0 bye');
          socket.end();
          return;
        default:
          return say('502 5.5.2 unknown command');
      }
    };
    const onData = (chunk: Buffer) => {
      buf += chunk.toString('utf8');
      for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        onLine(line);
      }
    };
    raw.on('data', onData);
    say('220 test.local ESMTP ready');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as { port: number }).port,
    messages,
    commands,
    close: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}
