// A self-signed certificate made at start with openssl (present on Debian); its SHA-256 fingerprint.
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HomeostatError } from '../../bus/mod.ts';

export interface SelfSigned {
  key: string;
  cert: string;
  fingerprint: string;
}

export function makeSelfSignedCert(host: string): SelfSigned {
  const dir = mkdtempSync(join(tmpdir(), 'homeostat-sim-cert-'));
  try {
    const san = ['IP:127.0.0.1', 'DNS:localhost', /^\d+\.\d+\.\d+\.\d+$/.test(host) ? `IP:${host}` : `DNS:${host}`].filter((v, i, a) => a.indexOf(v) === i).join(',');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '30',
      '-subj', '/CN=homeostat-sim', '-addext', `subjectAltName=${san}`,
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
    ], { stdio: 'ignore' });
    const cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
    const key = readFileSync(join(dir, 'key.pem'), 'utf8');
    return { key, cert, fingerprint: new X509Certificate(cert).fingerprint256 };
  } catch (e) {
    throw new HomeostatError('HOMEOSTAT_ERR_CONFIG', `cannot make a self-signed certificate with openssl (${(e as Error).message.split('\n')[0]}); install openssl or run the simulator with --http`, { cause: e });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
