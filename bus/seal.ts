// Signed decisions. The decision agent seals every action it approves (ed25519 over the action's
// canonical bytes, with an expiry); the action agent runs only actions whose seal verifies against
// a key it trusts. Operators sign their approvals the same way. Keys are NATS nkeys: the identity
// an agent connects with is also the key it signs with. The signing itself is Node's native
// ed25519 (the nkeys library's pure-JS one costs ~100× more per action; see bench/seal.ts).
import { createPrivateKey, createPublicKey, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';
import { createUser, fromSeed } from '@nats-io/nkeys';
import type { Action } from './schemas.ts';

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** RFC 4648 base32 without padding, as nkeys encode them. */
function base32Decode(s: string): Buffer {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const ch of s) {
    const v = B32.indexOf(ch);
    if (v < 0) throw new Error('not base32');
    value = (value << 5) | v;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

// DER prefixes of a PKCS#8 ed25519 private key and an SPKI ed25519 public key (RFC 8410)
const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');

/** An nkey user seed (`SU…`: 2 prefix bytes, the 32-byte ed25519 seed, a CRC) as a private key. */
function privateKeyOfSeed(seed: string): KeyObject {
  const raw = base32Decode(seed.trim()).subarray(2, 34);
  return createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, raw]), format: 'der', type: 'pkcs8' });
}

const publicKeys = new Map<string, KeyObject>();
/** An nkey public key (`U…`: 1 prefix byte, the 32-byte ed25519 key, a CRC). */
function publicKeyOf(nkey: string): KeyObject {
  let k = publicKeys.get(nkey);
  if (!k) {
    if (!/^U[A-Z2-7]{55}$/.test(nkey)) throw new Error('not an nkey user public key');
    k = createPublicKey({ key: Buffer.concat([SPKI_ED25519, base32Decode(nkey).subarray(1, 33)]), format: 'der', type: 'spki' });
    if (publicKeys.size > 1000) publicKeys.clear();
    publicKeys.set(nkey, k);
  }
  return k;
}

const enc = new TextEncoder();

/** JSON with sorted keys and no undefined: the same value always gives the same bytes. */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : canonicalJson(x))).join(',')}]`;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
}

/** What an action's signature covers: everything but the seal's own signature. Outcome fields
 *  (upid, error, verified) are not set on an approved action, so they are covered as absent. */
export function actionBytes(a: Action, seal: { by: string; exp: number }): Uint8Array {
  const { seal: _s, ...rest } = a;
  void _s;
  return enc.encode(`homeostat-action-v1\n${canonicalJson(rest)}\n${seal.by}\n${seal.exp}`);
}

export interface Signer {
  /** The public key (nkey, `U…`) others verify with. */
  readonly publicKey: string;
  sign(bytes: Uint8Array): string;
}

export function signerFromSeed(seed: string): Signer {
  const key = privateKeyOfSeed(seed);
  const publicKey = fromSeed(enc.encode(seed.trim())).getPublicKey();
  return { publicKey, sign: (b) => edSign(null, b, key).toString('base64') };
}

/** A fresh key (tests, and a stack started without a credentials directory). */
export function newSigner(): Signer & { seed: string } {
  const seed = new TextDecoder().decode(createUser().getSeed());
  return { ...signerFromSeed(seed), seed };
}

export function verifySignature(publicKey: string, bytes: Uint8Array, sig: string): boolean {
  try {
    return edVerify(null, bytes, publicKeyOf(publicKey), Buffer.from(sig, 'base64'));
  } catch {
    return false;
  }
}

/** Seal an approved action; it may be started until `ttlMs` from now. */
export function sealAction(a: Action, signer: Signer, ttlMs: number, now = Date.now()): Action {
  const seal = { by: signer.publicKey, exp: now + ttlMs };
  return { ...a, seal: { ...seal, sig: signer.sign(actionBytes(a, seal)) } };
}

export type SealCheck = { ok: true; by: string } | { ok: false; reason: 'unsigned' | 'forged' | 'untrusted' | 'expired'; detail: string };

/** Does the action carry a valid seal of a trusted key? `expired` only when `now` is past it. */
export function checkSeal(a: Action, trusted: ReadonlySet<string>, now = Date.now()): SealCheck {
  const s = a.seal;
  if (!s) return { ok: false, reason: 'unsigned', detail: 'the action carries no signature of the decision agent' };
  if (!trusted.has(s.by)) return { ok: false, reason: 'untrusted', detail: `signed by ${s.by.slice(0, 12)}…, which is not the decision agent's key` };
  if (!verifySignature(s.by, actionBytes(a, s), s.sig)) return { ok: false, reason: 'forged', detail: 'the signature does not match the action (altered or forged)' };
  if (now > s.exp) return { ok: false, reason: 'expired', detail: `the signature expired at ${new Date(s.exp).toISOString()}` };
  return { ok: true, by: s.by };
}

/** An operator's signature over an approval or denial (`fleet.cmd.approve|deny`). */
export function approvalBytes(p: { verb: 'approve' | 'deny'; actionId: string; at: string }): Uint8Array {
  return enc.encode(`homeostat-${p.verb}-v1\n${p.actionId}\n${p.at}`);
}

export interface SignedApproval {
  key: string;
  at: string;
  sig: string;
}

export function signApproval(signer: Signer, verb: 'approve' | 'deny', actionId: string, now = Date.now()): SignedApproval {
  const at = new Date(now).toISOString();
  return { key: signer.publicKey, at, sig: signer.sign(approvalBytes({ verb, actionId, at })) };
}

/** How far an approval's own timestamp may be from the decision agent's clock. */
export const APPROVAL_SKEW_MS = 5 * 60_000;

/** The operator key that signed this approval, or why it does not count. */
export function checkApproval(signed: SignedApproval | undefined, verb: 'approve' | 'deny', actionId: string, trusted: ReadonlySet<string>, now = Date.now()): { ok: true; key: string } | { ok: false; reason: string } {
  if (!signed) return { ok: false, reason: `an ${verb} must be signed by an operator key (homeostat ${verb} signs with NATS_CREDS / <data-dir>/creds/operator.nk)` };
  if (!trusted.has(signed.key)) return { ok: false, reason: `key ${signed.key.slice(0, 12)}… is not a trusted operator key (HOMEOSTAT_OPERATOR_KEYS)` };
  if (!verifySignature(signed.key, approvalBytes({ verb, actionId, at: signed.at }), signed.sig)) return { ok: false, reason: `the ${verb} signature does not match action ${actionId}` };
  const at = Date.parse(signed.at);
  if (!Number.isFinite(at) || Math.abs(now - at) > APPROVAL_SKEW_MS) return { ok: false, reason: `the ${verb} was signed at ${signed.at}, too far from now (a replayed approval?)` };
  return { ok: true, key: signed.key };
}
