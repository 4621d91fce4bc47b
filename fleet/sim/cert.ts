// A throwaway self-signed certificate for the simulator's HTTPS, made by the system's openssl
// (Node has no certificate generator). Lives in a temp dir that is removed right after reading.
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HomeostatError } from '../../core/mod.ts';

export interface SimCert {
  keyPem: string;
  certPem: string;
  /** SHA-256 of the DER certificate, `AA:BB:…` like PVE shows it. */
  fingerprint: string;
}

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 20_000 }, (err, _stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr: String(stderr) }));
      else resolve();
    });
  });
}

/** Subject alternative names: always 127.0.0.1 and localhost, plus the host we listen on. */
function altNames(host: string): string {
  // `sim`: the simulator's service name in compose, where the agents reach it as https://sim:8006
  const names = new Set(['IP:127.0.0.1', 'DNS:localhost', 'DNS:sim']);
  if (host && host !== '0.0.0.0' && host !== '::') names.add(isIP(host) ? `IP:${host}` : `DNS:${host}`);
  return [...names].join(',');
}

export async function generateSelfSignedCert(host = '127.0.0.1'): Promise<SimCert> {
  const dir = await mkdtemp(join(tmpdir(), 'homeostat-sim-cert-'));
  try {
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    try {
      await run('openssl', [
        'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '30',
        '-subj', '/CN=homeostat-sim', '-addext', `subjectAltName=${altNames(host)}`, '-keyout', key, '-out', cert,
      ]);
    } catch (e) {
      const err = e as NodeJS.ErrnoException & { stderr?: string };
      if (err.code === 'ENOENT') {
        throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', 'openssl not found: the simulator needs it for its HTTPS certificate; install it (Debian: apt-get install -y openssl) or pass --http', { cause: e });
      }
      const why = (err.stderr ?? err.message).trim().split('\n')[0];
      throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', `openssl could not make the simulator's certificate (${why}); pass --http to run without TLS`, { cause: e });
    }
    const [keyPem, certPem] = await Promise.all([readFile(key, 'utf8'), readFile(cert, 'utf8')]);
    return { keyPem, certPem, fingerprint: new X509Certificate(certPem).fingerprint256 };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
