// Seals: canonical bytes, the nkey signature they carry, and what breaks them.
import { describe, expect, it } from 'vitest';
import { fromSeed } from '@nats-io/nkeys';
import { actionBytes, canonicalJson, checkSeal, newSigner, sealAction, type Action } from '../bus/mod.ts';

const action: Action = { actionId: 'act-1', verb: 'start', target: { vmid: 159, node: 'node-b' }, params: {}, proposer: 'runbook', requestedBy: 'decision', needsApproval: false };

describe('seal', () => {
  it('canonical JSON sorts keys and drops undefined, so key order never changes the bytes', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, undefined], c: 'x' }, e: undefined })).toBe('{"a":{"c":"x","d":[1,null]},"b":1}');
    expect(canonicalJson({ x: 1, y: 2 })).toBe(canonicalJson({ y: 2, x: 1 }));
  });

  it('is the nkey signature: the same bytes as the nkeys library (what NATS tools verify)', () => {
    const s = newSigner();
    const sealed = sealAction(action, s, 60_000, 1000);
    const expected = Buffer.from(fromSeed(new TextEncoder().encode(s.seed)).sign(actionBytes(action, sealed.seal!))).toString('base64');
    expect(sealed.seal).toMatchObject({ by: s.publicKey, exp: 61_000, sig: expected });
    expect(fromSeed(new TextEncoder().encode(s.seed)).getPublicKey()).toBe(s.publicKey);
  });

  it('verifies for a trusted key until it expires; any change, another key or no seal fails', () => {
    const s = newSigner();
    const trusted = new Set([s.publicKey]);
    const sealed = sealAction(action, s, 60_000, 1000);
    expect(checkSeal(sealed, trusted, 2000)).toEqual({ ok: true, by: s.publicKey });
    expect(checkSeal(sealed, trusted, 62_000)).toMatchObject({ ok: false, reason: 'expired' });
    expect(checkSeal({ ...sealed, target: { vmid: 101, node: 'node-c' } }, trusted, 2000)).toMatchObject({ ok: false, reason: 'forged' });
    expect(checkSeal({ ...sealed, seal: { ...sealed.seal!, exp: 9e12 } }, trusted, 2000)).toMatchObject({ ok: false, reason: 'forged' });
    expect(checkSeal(sealed, new Set([newSigner().publicKey]), 2000)).toMatchObject({ ok: false, reason: 'untrusted' });
    expect(checkSeal(action, trusted, 2000)).toMatchObject({ ok: false, reason: 'unsigned' });
  });
});
