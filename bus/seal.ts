// Signed decisions. The decision agent seals every action it approves (ed25519 over the action's
// canonical bytes, with an expiry); the action agent runs only actions whose seal verifies against
// a key it trusts. Operators sign their approvals the same way. Keys are NATS nkeys: the identity
// an agent connects with is also the key it signs with.
import { createUser, fromPublic, fromSeed, type KeyPair } from '@nats-io/nkeys';
import type { Action } from './schemas.ts';

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
  const kp = fromSeed(enc.encode(seed.trim()));
  return keyPairSigner(kp);
}

/** A fresh key (tests, and a stack started without a credentials directory). */
export function newSigner(): Signer & { seed: string } {
  const kp = createUser();
  return { ...keyPairSigner(kp), seed: new TextDecoder().decode(kp.getSeed()) };
}

function keyPairSigner(kp: KeyPair): Signer {
  return { publicKey: kp.getPublicKey(), sign: (b) => Buffer.from(kp.sign(b)).toString('base64') };
}

export function verifySignature(publicKey: string, bytes: Uint8Array, sig: string): boolean {
  try {
    return fromPublic(publicKey).verify(bytes, Buffer.from(sig, 'base64'));
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
