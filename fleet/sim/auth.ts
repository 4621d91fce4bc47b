// PVE API token check: `Authorization: PVEAPIToken=USER@REALM!TOKENID=SECRET`, with PVE's
// 401 reasons. The secret is compared in constant time.
import { createHash, timingSafeEqual } from 'node:crypto';

export type AuthResult = { ok: true; user: string } | { ok: false; reason: string };

const TOKEN_ID = /^([^\s@!]+)@([^\s@!]+)!([A-Za-z][A-Za-z0-9._-]*)$/;

export function isTokenId(id: string): boolean {
  return TOKEN_ID.test(id);
}

const digest = (s: string) => createHash('sha256').update(s).digest();

export class TokenAuth {
  private readonly secretDigest: Buffer;
  private readonly user: string;
  private readonly tokenName: string;

  constructor(
    readonly tokenId: string,
    secret: string,
  ) {
    const m = TOKEN_ID.exec(tokenId);
    if (!m) throw new Error(`'${tokenId}' is not a valid token ID (USER@REALM!TOKENID)`);
    this.user = `${m[1]}@${m[2]}`;
    this.tokenName = m[3];
    this.secretDigest = digest(secret);
  }

  check(header: string | undefined): AuthResult {
    const value = header ? /(?:^|\s)PVEAPIToken(?:=| )(\S+)/.exec(header)?.[1] : undefined;
    if (!value) return { ok: false, reason: 'No ticket' };
    const eq = value.lastIndexOf('=');
    if (eq <= 0 || eq === value.length - 1) return { ok: false, reason: 'no token value' };
    const id = value.slice(0, eq);
    const m = TOKEN_ID.exec(id);
    if (!m) return { ok: false, reason: `'${id}' is not a valid token ID` };
    if (`${m[1]}@${m[2]}` !== this.user) return { ok: false, reason: `user '${m[1]}@${m[2]}' does not exist` };
    if (m[3] !== this.tokenName) return { ok: false, reason: `no such token '${m[3]}' for user '${this.user}'` };
    if (!timingSafeEqual(digest(value.slice(eq + 1)), this.secretDigest)) return { ok: false, reason: 'invalid token value!' };
    return { ok: true, user: this.tokenId };
  }
}
