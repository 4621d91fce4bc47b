// Turns what one attempt saw (an HTTP answer, a network error, our own timeout) into a coded
// HomeostatError, and says whether another attempt could help. Callers branch on the code only.
import { HomeostatError, type ErrorCode } from '../core/mod.ts';

/** What the transport recorded about one attempt; filled by its fetch. */
export interface AttemptRecord {
  method: string;
  path: string;
  status?: number;
  statusText?: string;
  body?: string;
  networkError?: unknown;
  timedOut: boolean;
}

export interface Classified {
  code: ErrorCode;
  retryable: boolean;
  /** One line without the "after N attempts" suffix. */
  detail: string;
  cause: unknown;
}

// OpenSSL / Node verification failures: no retry will fix these, the configuration must change.
const TLS_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE', 'CERT_UNTRUSTED', 'CERT_REJECTED', 'ERR_TLS_CERT_ALTNAME_INVALID', 'EPROTO',
]);

function causeChain(e: unknown): (Error & { code?: string })[] {
  const out: (Error & { code?: string })[] = [];
  for (let c = e; c instanceof Error && out.length < 6; c = c.cause) out.push(c as Error & { code?: string });
  return out;
}

/** Collapse anything PVE or the network said to one short line. */
export function oneLine(s: string, max = 240): string {
  const flat = s.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

function pveMessage(rec: AttemptRecord): string {
  const reason = rec.statusText ?? '';
  let errors = '';
  try {
    const parsed = JSON.parse(rec.body ?? '') as { errors?: unknown; message?: unknown };
    if (parsed.errors && typeof parsed.errors === 'object') errors = JSON.stringify(parsed.errors);
    else if (typeof parsed.message === 'string' && !reason.includes(parsed.message.trim())) errors = parsed.message;
  } catch {
    if (rec.body && !reason) errors = rec.body;
  }
  return oneLine([`${rec.status}`, reason, errors].filter(Boolean).join(' '));
}

function classifyNetwork(rec: AttemptRecord, origin: string, cause: unknown): Classified {
  const chain = causeChain(rec.networkError);
  const coded = chain.find((c) => typeof c.code === 'string' && c.code !== 'UND_ERR_ABORTED');
  const tls = chain.find((c) => (c.code && (TLS_CODES.has(c.code) || c.code.startsWith('ERR_SSL_'))) || /certificate/i.test(c.message));
  if (tls) {
    const why = oneLine(`${tls.message}${tls.code && !tls.message.includes(tls.code) ? ` (${tls.code})` : ''}`);
    const hint = tls.code === 'ERR_TLS_CERT_ALTNAME_INVALID'
      ? '; use the host name the certificate was issued for in PVE_URL'
      : /wrong version|packet length/i.test(why) ? '; is the server speaking plain http? then use http:// in PVE_URL' : '';
    return { code: 'HOMEOSTAT_ERR_PVE_TLS', retryable: false, detail: `TLS with ${origin} failed: ${why}${hint}`, cause: rec.networkError };
  }
  const last = chain[chain.length - 1];
  const why = coded ? `${coded.code}${coded.message && !coded.message.includes(String(coded.code)) ? ` ${coded.message}` : ''}` : last?.message ?? String(rec.networkError);
  return { code: 'HOMEOSTAT_ERR_PVE_UNAVAILABLE', retryable: true, detail: `cannot reach ${origin}: ${oneLine(why)}`, cause: cause ?? rec.networkError };
}

/** Classify one failed attempt. `err` is what proxmox-api threw (or our own error). */
export function classifyAttempt(rec: AttemptRecord, err: unknown, origin: string, timeoutMs: number): Classified {
  if (rec.timedOut) {
    return { code: 'HOMEOSTAT_ERR_PVE_TIMEOUT', retryable: true, detail: `no answer from ${origin} within ${timeoutMs} ms`, cause: err };
  }
  if (rec.networkError !== undefined) return classifyNetwork(rec, origin, err);
  const s = rec.status;
  if (s === undefined || s === 200) {
    // proxmox-api refused the answer itself (e.g. an unexpected content type from a proxy in front of PVE).
    const msg = err instanceof Error ? err.message : String(err);
    return { code: 'HOMEOSTAT_ERR_PVE_UNAVAILABLE', retryable: false, detail: `unexpected answer from ${origin}: ${oneLine(msg)}`, cause: err };
  }
  const said = pveMessage(rec);
  if (s === 401 || s === 403) return { code: 'HOMEOSTAT_ERR_PVE_AUTH', retryable: false, detail: `PVE refused the token: ${said}`, cause: err };
  if (s === 404) return { code: 'HOMEOSTAT_ERR_PVE_NOT_FOUND', retryable: false, detail: `PVE answered ${said}`, cause: err };
  // PVE reports a missing guest or snapshot as a 500 whose reason says so, and an unknown node as a
  // failed "hostname lookup" (cluster members resolve via /etc/pve/.members); retrying cannot help.
  if (s === 500 && /does not exist|no such (vm|guest|snapshot|task|node)|not found|hostname lookup '[^']*' failed/i.test(said)) {
    return { code: 'HOMEOSTAT_ERR_PVE_NOT_FOUND', retryable: false, detail: `PVE answered ${said}`, cause: err };
  }
  // PVE's refusals in the guest's current state are 500s too; asking again gives the same answer.
  if (s === 500 && /already running|not running|is running|is locked|already (exists|used|defined)|not allowed|no quorum|target is local node|use online migration|use option '--online'/i.test(said)) {
    return { code: 'HOMEOSTAT_ERR_PVE_REFUSED', retryable: false, detail: `PVE refused: ${said}`, cause: err };
  }
  if (s === 400) return { code: 'HOMEOSTAT_ERR_PVE_BAD_REQUEST', retryable: false, detail: `PVE rejected the parameters: ${said}`, cause: err };
  if (s === 501) return { code: 'HOMEOSTAT_ERR_PVE_BAD_REQUEST', retryable: false, detail: `not implemented by this PVE: ${said}`, cause: err };
  if (s >= 500) return { code: 'HOMEOSTAT_ERR_PVE_UNAVAILABLE', retryable: true, detail: `PVE answered ${said}`, cause: err };
  if (s >= 400) return { code: 'HOMEOSTAT_ERR_PVE_BAD_REQUEST', retryable: false, detail: `PVE answered ${said}`, cause: err };
  return { code: 'HOMEOSTAT_ERR_PVE_UNAVAILABLE', retryable: false, detail: `unexpected HTTP ${said} from ${origin}`, cause: err };
}

export function toHomeostatError(c: Classified, method: string, path: string, attempts: number): HomeostatError {
  const tries = attempts > 1 ? ` (after ${attempts} attempts)` : '';
  return new HomeostatError(c.code, `${method} ${path}: ${c.detail}${tries}`, { cause: c.cause });
}
